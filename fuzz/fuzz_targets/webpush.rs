//! Fuzzes `pushwarden_push::fuzzing::subscription` (`endpoint \n p256dh \n auth`). An input that
//! starts with `{` is a `/push/register` body instead: parsed by the bitwarden layer, and its
//! `webPush` subscription then checked by the push layer, as a registration goes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushwarden_bitwarden::device_push::parse_registration;
use pushwarden_model::PushChannel;
use pushwarden_push::providers::parse_subscription;

fuzz_target!(|data: &[u8]| {
    if data.first() == Some(&b'{') {
        if let Ok(device) = parse_registration(data) {
            if let PushChannel::WebPush {
                endpoint,
                p256dh,
                auth,
            } = device.channel
            {
                let _ = parse_subscription(&endpoint, &p256dh, &auth, false);
            }
        }
        return;
    }
    pushwarden_push::fuzzing::subscription(data);
});
