//! The registry and the delivery queue, on SQLite and on PostgreSQL alike.

mod support;

use std::time::Duration;

use pushwarden_model::ClientType;
use pushwarden_model::PushType;
use pushwarden_model::{DeviceTarget, PushMessage};
use pushwarden_model::{Recipient, Target};
use pushwarden_push::apns::Environment;
use pushwarden_push::registration::{Channel, Platform, Registration};
use pushwarden_push::store::{ClaimedBatch, FinishedBatch, Pending, RetryPlan, Store};

const ALL: &[Platform] = &Platform::ALL;

fn device(id: &str, user: &str, platform: Platform, device_type: u8) -> Registration {
    Registration {
        device_id: id.into(),
        platform,
        channel: match platform {
            Platform::Apns | Platform::Fcm => Channel::Token(format!("token-{id}")),
            _ => Channel::WebPush {
                endpoint: format!("https://push.example/{id}"),
                p256dh: "key".into(),
                auth: "auth".into(),
            },
        },
        apns_environment: (platform == Platform::Apns).then_some(Environment::Sandbox),
        user_id: user.into(),
        identifier: Some(format!("ident-{id}")),
        organization_ids: Vec::new(),
        installation_id: Some("inst".into()),
        owner: None,
        device_type,
        created_ms: 1_000,
        updated_ms: 1_000,
    }
}

fn to(recipient: Recipient) -> DeviceTarget {
    DeviceTarget {
        target: Target {
            recipient,
            client_type: None,
        },
        exclude_identifier: None,
    }
}

fn message() -> PushMessage {
    PushMessage {
        push_type: PushType::SyncVault,
        payload: r#"{"userId":"u1","date":"2026-11-28T00:00:00Z"}"#.into(),
        context_id: None,
    }
}

/// Expands every push being expanded, in batches of at most `batch` devices.
async fn expand_all(store: &Store, now_ms: i64, batch: u32) -> Vec<ClaimedBatch> {
    let mut all = Vec::new();
    loop {
        let batches = store
            .deliveries()
            .expand(now_ms, Duration::from_secs(60), 1_000, batch)
            .await
            .expect("expand");
        if batches.is_empty() {
            return all;
        }
        all.extend(batches);
    }
}

/// A batch finished with these of its deliveries pending.
fn finished(batch: &ClaimedBatch, pending: Vec<Pending>) -> FinishedBatch {
    FinishedBatch {
        message_id: batch.message_id.clone(),
        after_device: batch.after_device.clone(),
        created_ms: batch.deliveries.first().map_or(0, |d| d.created_ms),
        pending,
    }
}

/// A batch's device ids, sorted.
fn ids(batch: &ClaimedBatch) -> Vec<&str> {
    let mut ids: Vec<&str> = batch
        .deliveries
        .iter()
        .map(|d| d.device_id.as_str())
        .collect();
    ids.sort();
    ids
}

/// A delivery put back untried, due at `at`.
fn deferred(device_id: &str, at: i64) -> Pending {
    Pending {
        device_id: device_id.into(),
        platform: "fcm",
        attempts: 0,
        next_attempt_ms: at,
        last_error: None,
    }
}

/// Device ids a push to `target` would reach.
async fn reached(store: &Store, target: &DeviceTarget, platforms: &[Platform]) -> Vec<String> {
    let enqueued = store
        .deliveries()
        .enqueue(target, &message(), platforms, 10_000)
        .await
        .expect("enqueue");
    let batches = expand_all(store, 10_000, 100).await;
    let mut ids: Vec<String> = batches
        .iter()
        .flat_map(|b| b.deliveries.iter().map(|d| d.device_id.clone()))
        .collect();
    assert_eq!(ids.len() as u64, enqueued.deliveries);
    let done: Vec<FinishedBatch> = batches.iter().map(|b| finished(b, Vec::new())).collect();
    store.deliveries().finish(&done, &[]).await.expect("finish");
    // Finishing a push's last batch deletes the push.
    assert_eq!(store.deliveries().pending().await.expect("pending"), 0);
    assert_eq!(
        store
            .deliveries()
            .purge_settled_messages()
            .await
            .expect("purge"),
        0
    );
    ids.sort();
    ids
}

#[tokio::test]
async fn registrations_round_trip_and_update() {
    for (backend, t) in support::both().await {
        let s = &t.store;
        let mut phone = device("d1", "u1", Platform::Apns, 1);
        phone.organization_ids = vec!["o1".into(), "o2".into()];
        s.registrations().upsert(&phone).await.unwrap();
        assert_eq!(
            s.registrations().get("d1").await.unwrap(),
            Some(phone.clone()),
            "{backend}"
        );

        // Re-registering replaces the channel and tags but keeps the creation time.
        let mut again = phone.clone();
        again.channel = Channel::Token("new-token".into());
        again.organization_ids = vec!["o3".into()];
        again.created_ms = 5_000;
        again.updated_ms = 5_000;
        s.registrations().upsert(&again).await.unwrap();
        let stored = s.registrations().get("d1").await.unwrap().unwrap();
        assert_eq!(
            stored.channel,
            Channel::Token("new-token".into()),
            "{backend}"
        );
        assert_eq!(stored.organization_ids, vec!["o3".to_owned()], "{backend}");
        assert_eq!(
            (stored.created_ms, stored.updated_ms),
            (1_000, 5_000),
            "{backend}"
        );

        let web = device("d2", "u1", Platform::WebPush, 9);
        s.registrations().upsert(&web).await.unwrap();
        assert_eq!(
            s.registrations().get("d2").await.unwrap(),
            Some(web),
            "{backend}"
        );
        let counts = s.registrations().counts().await.unwrap();
        assert_eq!(
            counts,
            vec![("apns".to_owned(), 1), ("webpush".to_owned(), 1)],
            "{backend}"
        );

        assert!(s.registrations().delete("d1").await.unwrap(), "{backend}");
        assert!(!s.registrations().delete("d1").await.unwrap(), "{backend}");
        assert_eq!(
            s.registrations().get("d1").await.unwrap(),
            None,
            "{backend}"
        );
        t.remove().await;
    }
}

#[tokio::test]
async fn targets_follow_bitwardens_tags() {
    for (backend, t) in support::both().await {
        let s = &t.store;
        let mut a = device("a", "u1", Platform::Fcm, 0);
        a.organization_ids = vec!["org".into()];
        let b = device("b", "u1", Platform::Apns, 1);
        let mut c = device("c", "u2", Platform::WebPush, 2);
        c.organization_ids = vec!["org".into()];
        c.installation_id = Some("other".into());
        let d = device("d", "u3", Platform::UnifiedPush, 0);
        for r in [&a, &b, &c, &d] {
            s.registrations().upsert(r).await.unwrap();
        }
        let user = to(Recipient::User("u1".into()));
        assert_eq!(reached(s, &user, ALL).await, ["a", "b"], "{backend}");
        // The sending device is left out.
        let mut not_a = user.clone();
        not_a.exclude_identifier = Some("ident-a".into());
        assert_eq!(reached(s, &not_a, ALL).await, ["b"], "{backend}");
        // Only platforms with a configured provider get deliveries.
        assert_eq!(
            reached(s, &user, &[Platform::Apns]).await,
            ["b"],
            "{backend}"
        );
        assert!(reached(s, &user, &[]).await.is_empty(), "{backend}");
        let org = to(Recipient::Organization("org".into()));
        assert_eq!(reached(s, &org, ALL).await, ["a", "c"], "{backend}");
        let mut org_browsers = org.clone();
        org_browsers.target.client_type = Some(ClientType::Browser);
        assert_eq!(reached(s, &org_browsers, ALL).await, ["c"], "{backend}");
        let inst = to(Recipient::Installation("inst".into()));
        assert_eq!(reached(s, &inst, ALL).await, ["a", "b", "d"], "{backend}");
        let mut inst_mobile = inst.clone();
        inst_mobile.target.client_type = Some(ClientType::Mobile);
        assert_eq!(
            reached(s, &inst_mobile, ALL).await,
            ["a", "b", "d"],
            "{backend}"
        );

        // Organization tags come and go.
        assert_eq!(
            s.registrations()
                .add_organization(&["b".into(), "zz".into()], "org")
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            s.registrations()
                .add_organization(&["b".into()], "org")
                .await
                .unwrap(),
            0
        );
        assert_eq!(reached(s, &org, ALL).await, ["a", "b", "c"], "{backend}");
        assert_eq!(
            s.registrations()
                .remove_organization(&["a".into()], "org")
                .await
                .unwrap(),
            1
        );
        assert_eq!(reached(s, &org, ALL).await, ["b", "c"], "{backend}");
        // Nobody matches: nothing is written.
        let none = s
            .deliveries()
            .enqueue(&to(Recipient::User("nobody".into())), &message(), ALL, 1)
            .await
            .unwrap();
        assert_eq!((none.message_id, none.deliveries), (None, 0), "{backend}");
        assert_eq!(s.deliveries().pending().await.unwrap(), 0, "{backend}");
        t.remove().await;
    }
}

/// A push is expanded a batch at a time in device id order, each batch leased; a batch whose
/// lease lapsed is read again whole; a finished batch leaves only its retries behind.
#[tokio::test]
async fn pushes_fan_out_in_leased_batches() {
    for (backend, t) in support::both().await {
        let s = &t.store;
        for (id, platform) in [
            ("a", Platform::Fcm),
            ("b", Platform::Apns),
            ("c", Platform::Fcm),
        ] {
            s.registrations()
                .upsert(&device(id, "u1", platform, 0))
                .await
                .unwrap();
        }
        let mut m = message();
        m.context_id = Some("ctx".into());
        let q = s
            .deliveries()
            .enqueue(&to(Recipient::User("u1".into())), &m, ALL, 1_000)
            .await
            .unwrap();
        assert_eq!(q.deliveries, 3, "{backend}");
        assert_eq!(s.deliveries().pending().await.unwrap(), 1, "{backend}");
        // Due at once (a new push's turn comes with a head start).
        assert_eq!(s.deliveries().next_due_ms().await.unwrap(), Some(-1_000));

        let lease = Duration::from_secs(30);
        let first = s.deliveries().expand(1_000, lease, 10, 2).await.unwrap();
        assert_eq!(first.len(), 1, "{backend}");
        assert_eq!(ids(&first[0]), ["a", "b"], "{backend}");
        let c = first[0]
            .deliveries
            .iter()
            .find(|d| d.device_id == "a")
            .expect("a");
        assert_eq!(c.payload, m.payload);
        assert_eq!(c.context_id.as_deref(), Some("ctx"));
        assert_eq!(c.push_type, PushType::SyncVault.as_u8());
        assert_eq!((c.attempts, c.created_ms), (0, 1_000));
        let channel = &c.device.as_ref().expect("registered").channel;
        assert_eq!(channel.address(), "token-a");
        // A device registered meanwhile, after the cursor, is reached too.
        s.registrations()
            .upsert(&device("d", "u1", Platform::Fcm, 0))
            .await
            .unwrap();
        let second = s.deliveries().expand(1_100, lease, 10, 2).await.unwrap();
        assert_eq!(ids(&second[0]), ["c", "d"], "{backend}");
        assert!(s
            .deliveries()
            .expand(1_200, lease, 10, 2)
            .await
            .unwrap()
            .is_empty());
        // Two batches in flight; nothing lapsed yet.
        assert_eq!(s.deliveries().pending().await.unwrap(), 2, "{backend}");
        assert!(s
            .deliveries()
            .reclaim_batches(30_999, lease, 10)
            .await
            .unwrap()
            .is_empty());

        // The second batch finishes: d settled, c to be retried; the first one's worker dies.
        let retry = Pending {
            device_id: "c".into(),
            platform: "fcm",
            attempts: 1,
            next_attempt_ms: 5_000,
            last_error: Some("503".into()),
        };
        s.deliveries()
            .finish(&[finished(&second[0], vec![retry])], &[])
            .await
            .unwrap();
        assert!(s
            .deliveries()
            .claim(4_999, lease, 10)
            .await
            .unwrap()
            .is_empty());

        // A new connection (a restart) finds everything still there.
        let url = t.url.clone();
        s.close().await;
        let reopened = Store::connect(&url).await.unwrap();
        let d = reopened.deliveries();
        assert_eq!(
            d.pending().await.unwrap(),
            2,
            "{backend}: a batch and a retry"
        );
        assert_eq!(d.next_due_ms().await.unwrap(), Some(5_000), "{backend}");
        let due = d.claim(5_000, lease, 10).await.unwrap();
        assert_eq!(due.len(), 1, "{backend}");
        assert_eq!((due[0].device_id.as_str(), due[0].attempts), ("c", 1));
        assert_eq!(due[0].created_ms, 1_000, "{backend}");
        // The first batch's lease lapsed at 31_000: it is read again, whole.
        let again = d.reclaim_batches(31_000, lease, 10).await.unwrap();
        assert_eq!(again.len(), 1, "{backend}");
        assert_eq!(ids(&again[0]), ["a", "b"], "{backend}");
        assert!(d
            .reclaim_batches(31_000, lease, 10)
            .await
            .unwrap()
            .is_empty());
        // SQLite's restart frees both leases at once (the batch's and the retry's).
        assert_eq!(reopened.release_all_leases().await.unwrap(), 2, "{backend}");

        // A device unregistered after the push was accepted: gone from a batch read again,
        // and a retry of it comes back without a channel.
        reopened.registrations().delete("c").await.unwrap();
        let claimed = d.claim(7_000, lease, 10).await.unwrap();
        assert!(claimed[0].device.is_none(), "{backend}");
        reopened.registrations().delete("a").await.unwrap();
        let batch = d.reclaim_batches(7_000, lease, 10).await.unwrap();
        assert_eq!(ids(&batch[0]), ["b"], "{backend}");
        // Finishing the last batch and settling the retry deletes the push.
        d.finish(&[finished(&batch[0], Vec::new())], &[claimed[0].key()])
            .await
            .unwrap();
        assert_eq!(d.pending().await.unwrap(), 0, "{backend}");
        assert_eq!(d.purge_settled_messages().await.unwrap(), 0, "{backend}");
        assert_eq!(d.next_due_ms().await.unwrap(), None, "{backend}");
        reopened.close().await;
        t.remove().await;
    }
}

/// Pushes being expanded take turns: a push to many devices does not hold back one that came
/// after it for a single device.
#[tokio::test]
async fn a_big_push_and_a_small_one_take_turns() {
    for (backend, t) in support::both().await {
        let s = &t.store;
        let mut devices = Vec::new();
        for i in 0..50 {
            let mut r = device(&format!("m{i:03}"), &format!("member{i}"), Platform::Fcm, 0);
            r.organization_ids = vec!["big".into()];
            devices.push(r);
        }
        devices.push(device("z", "loner", Platform::Apns, 1));
        for r in &devices {
            s.registrations().upsert(r).await.unwrap();
        }
        let org = to(Recipient::Organization("big".into()));
        let q = s
            .deliveries()
            .enqueue(&org, &message(), ALL, 1_000)
            .await
            .unwrap();
        assert_eq!(q.deliveries, 50, "{backend}");
        let lease = Duration::from_secs(30);
        let first = s.deliveries().expand(1_001, lease, 10, 10).await.unwrap();
        assert_eq!(first.len(), 1, "{backend}");
        s.deliveries()
            .enqueue(&to(Recipient::User("loner".into())), &message(), ALL, 1_002)
            .await
            .unwrap();
        // The next round serves both, an even share of its budget each: the small push first
        // (a new push has a head start on those served lately), then the big one, 20 of 40.
        let next = s.deliveries().expand(1_003, lease, 40, 40).await.unwrap();
        let sizes: Vec<usize> = next.iter().map(|b| b.deliveries.len()).collect();
        assert_eq!(sizes, [1, 20], "{backend}");
        assert_eq!(next[0].deliveries[0].device_id, "z", "{backend}");
        assert!(next[0].whole && !next[1].whole, "{backend}");
        // Pushes not started yet only: the big one has started.
        s.deliveries()
            .enqueue(&to(Recipient::User("loner".into())), &message(), ALL, 1_004)
            .await
            .unwrap();
        let new = s
            .deliveries()
            .expand_new(1_005, lease, 40, 40)
            .await
            .unwrap();
        assert_eq!(new.len(), 1, "{backend}");
        assert_eq!(new[0].deliveries[0].device_id, "z", "{backend}");
        let next: Vec<ClaimedBatch> = next.into_iter().skip(1).collect();
        // The rest of the organization.
        let rest = expand_all(s, 1_004, 10).await;
        let mut ids: Vec<String> = first
            .iter()
            .chain(&next)
            .chain(&rest)
            .flat_map(|b| b.deliveries.iter().map(|d| d.device_id.clone()))
            .collect();
        ids.sort();
        let expected: Vec<String> = (0..50).map(|i| format!("m{i:03}")).collect();
        assert_eq!(ids, expected, "{backend}: each device once");
        t.remove().await;
    }
}

/// A deferred delivery (its Web Push origin busy or backing off) goes back to the queue
/// untried: invisible until the new time, its attempts unchanged, never lost.
#[tokio::test]
async fn deferred_deliveries_wait_without_counting_an_attempt() {
    for (backend, t) in support::both().await {
        let s = &t.store;
        for id in ["a", "b", "c"] {
            s.registrations()
                .upsert(&device(id, "u1", Platform::Fcm, 0))
                .await
                .unwrap();
        }
        s.deliveries()
            .enqueue(&to(Recipient::User("u1".into())), &message(), ALL, 1_000)
            .await
            .unwrap();
        // The batch's deliveries all deferred to 1_000: rows of their own.
        let batches = expand_all(s, 1_000, 10).await;
        let rows = ["a", "b", "c"].map(|id| deferred(id, 1_000)).to_vec();
        s.deliveries()
            .finish(&[finished(&batches[0], rows)], &[])
            .await
            .unwrap();
        let lease = Duration::from_secs(30);
        let claimed = s.deliveries().claim(1_000, lease, 10).await.unwrap();
        assert_eq!(claimed.len(), 3, "{backend}");
        // One fails once (attempt counted), then two are deferred together.
        let plan = RetryPlan {
            attempts: 1,
            next_attempt_ms: 1_500,
            error: "timed out".into(),
        };
        s.deliveries()
            .retry(&claimed[0].key(), &plan)
            .await
            .unwrap();
        let failed = s.deliveries().claim(1_500, lease, 10).await.unwrap();
        assert_eq!(failed.len(), 1, "{backend}");
        let keys: Vec<(String, String)> = claimed[1..]
            .iter()
            .chain(&failed)
            .map(|c| c.key())
            .collect();
        s.deliveries().defer(&keys, 8_000).await.unwrap();
        assert!(
            s.deliveries()
                .claim(7_999, lease, 10)
                .await
                .unwrap()
                .is_empty(),
            "{backend}: deferred rows are not due before their time"
        );
        assert_eq!(s.deliveries().next_due_ms().await.unwrap(), Some(8_000));
        let mut again = s.deliveries().claim(8_000, lease, 10).await.unwrap();
        again.sort_by(|x, y| x.device_id.cmp(&y.device_id));
        let attempts: Vec<(String, u32)> = again
            .iter()
            .map(|c| (c.device_id.clone(), c.attempts))
            .collect();
        let mut expected: Vec<(String, u32)> = claimed
            .iter()
            .map(|c| {
                (
                    c.device_id.clone(),
                    u32::from(c.device_id == failed[0].device_id),
                )
            })
            .collect();
        expected.sort();
        assert_eq!(attempts, expected, "{backend}: deferring counts no attempt");
        t.remove().await;
    }
}

#[tokio::test]
async fn dead_tokens_are_removed_unless_renewed() {
    for (backend, t) in support::both().await {
        let s = &t.store;
        let mut r = device("a", "u1", Platform::Fcm, 0);
        r.organization_ids = vec!["o".into()];
        s.registrations().upsert(&r).await.unwrap();
        // Reported dead before the registration's last update: kept.
        assert!(
            !s.registrations()
                .remove_dead("a", "token-a", 999)
                .await
                .unwrap(),
            "{backend}"
        );
        // Another token than the one that failed: kept.
        assert!(
            !s.registrations()
                .remove_dead("a", "old", 2_000)
                .await
                .unwrap(),
            "{backend}"
        );
        assert!(
            s.registrations()
                .remove_dead("a", "token-a", 2_000)
                .await
                .unwrap(),
            "{backend}"
        );
        assert_eq!(s.registrations().get("a").await.unwrap(), None, "{backend}");
        let w = device("w", "u1", Platform::WebPush, 9);
        s.registrations().upsert(&w).await.unwrap();
        assert!(
            s.registrations()
                .remove_dead("w", "https://push.example/w", 2_000)
                .await
                .unwrap(),
            "{backend}"
        );
        t.remove().await;
    }
}

#[tokio::test]
async fn bad_urls_are_refused() {
    assert!(Store::connect("mysql://localhost/x").await.is_err());
    assert!(Store::connect("sqlite::memory:").await.is_err());
    let err = Store::connect("postgres://nobody:secret@127.0.0.1:1/x")
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("secret"), "{err}");
}

#[tokio::test]
async fn installations_and_their_keys() {
    for (backend, t) in support::both().await {
        let s = &t.store;
        let (a, key) = s
            .installations()
            .create(Some("ops@example.com"), 1_000)
            .await
            .unwrap();
        assert!(a.enabled, "{backend}");
        assert!(key.len() >= 30, "{backend}");
        use pushwarden_push::store::SecretCheck;
        assert_eq!(
            s.installations().check_secret(&a.id, &key).await.unwrap(),
            SecretCheck::Valid(a.clone()),
            "{backend}"
        );
        assert_eq!(
            s.installations().check_secret(&a.id, "nope").await.unwrap(),
            SecretCheck::WrongSecret,
            "{backend}"
        );
        assert_eq!(
            s.installations()
                .check_secret("missing", &key)
                .await
                .unwrap(),
            SecretCheck::Unknown,
            "{backend}"
        );
        assert!(s
            .installations()
            .set_enabled(&a.id, false, 2_000)
            .await
            .unwrap());
        assert_eq!(
            s.installations().check_secret(&a.id, &key).await.unwrap(),
            SecretCheck::Disabled,
            "{backend}"
        );
        assert!(!s
            .installations()
            .set_enabled("missing", true, 2_000)
            .await
            .unwrap());
        s.installations()
            .set_enabled(&a.id, true, 3_000)
            .await
            .unwrap();
        let new_key = s
            .installations()
            .rotate_key(&a.id, 4_000)
            .await
            .unwrap()
            .unwrap();
        assert_ne!(new_key, key);
        // Disabling and rotating each started a new key generation; enabling did not.
        assert_eq!(
            s.installations()
                .get(&a.id)
                .await
                .unwrap()
                .map(|i| i.key_generation),
            Some(2),
            "{backend}"
        );
        assert_eq!(
            s.installations().check_secret(&a.id, &key).await.unwrap(),
            SecretCheck::WrongSecret,
            "{backend}: the old key stops working"
        );
        assert!(matches!(
            s.installations()
                .check_secret(&a.id, &new_key)
                .await
                .unwrap(),
            SecretCheck::Valid(_)
        ));
        assert_eq!(
            s.installations().rotate_key("missing", 1).await.unwrap(),
            None
        );
        let listed = s.installations().list().await.unwrap();
        assert_eq!(listed.len(), 1, "{backend}");
        assert_eq!(listed[0].email.as_deref(), Some("ops@example.com"));
        let mut owned = device(&format!("{}_d", a.id), "u", Platform::Fcm, 0);
        owned.owner = Some(a.id.clone());
        s.registrations().upsert(&owned).await.unwrap();
        assert_eq!(
            s.registrations().count_owned(&a.id).await.unwrap(),
            1,
            "{backend}"
        );
        assert_eq!(
            s.registrations().get(&owned.device_id).await.unwrap(),
            Some(owned),
            "{backend}"
        );
        t.remove().await;
    }
}

/// What the admin page reads: last activity, devices per installation, a user's devices, and
/// pending deliveries per platform with those waiting for a retry.
#[tokio::test]
async fn what_the_admin_page_reads() {
    for (backend, t) in support::both().await {
        let s = &t.store;
        let (a, _) = s.installations().create(None, 1_000).await.unwrap();
        assert_eq!(a.last_activity_ms, None, "{backend}");
        s.installations().touch(&a.id, 61_000).await.unwrap();
        let listed = s.installations().list().await.unwrap();
        assert_eq!(listed[0].last_activity_ms, Some(61_000), "{backend}");
        for n in 0..3 {
            let mut owned = device(&format!("{}_d{n}", a.id), "relayed", Platform::Fcm, 0);
            owned.owner = Some(a.id.clone());
            s.registrations().upsert(&owned).await.unwrap();
        }
        let by_owner = s.registrations().counts_by_owner().await.unwrap();
        assert_eq!(by_owner.get(&a.id), Some(&3), "{backend}");
        assert_eq!(by_owner.len(), 1, "{backend}: local devices have no owner");

        let mut newer = device("phone", "u1", Platform::Fcm, 0);
        newer.updated_ms = 5_000;
        newer.created_ms = 5_000;
        s.registrations().upsert(&newer).await.unwrap();
        s.registrations()
            .upsert(&device("browser", "u1", Platform::WebPush, 9))
            .await
            .unwrap();
        s.registrations()
            .upsert(&device("other", "u2", Platform::Fcm, 0))
            .await
            .unwrap();
        let mine: Vec<String> = s
            .registrations()
            .by_user("u1", 10)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.device_id)
            .collect();
        assert_eq!(mine, ["phone", "browser"], "{backend}: newest first");
        assert_eq!(s.registrations().by_user("u1", 1).await.unwrap().len(), 1);

        s.deliveries()
            .enqueue(&to(Recipient::User("u1".into())), &message(), ALL, 10_000)
            .await
            .unwrap();
        // The phone's delivery failed once; the browser's was put back (its origin busy).
        let batches = expand_all(s, 10_000, 10).await;
        let retry = Pending {
            device_id: "phone".into(),
            platform: "fcm",
            attempts: 1,
            next_attempt_ms: 20_000,
            last_error: Some("FCM 503".into()),
        };
        let busy = Pending {
            platform: "webpush",
            ..deferred("browser", 12_000)
        };
        s.deliveries()
            .finish(&[finished(&batches[0], vec![retry, busy])], &[])
            .await
            .unwrap();
        let pending = s.deliveries().pending_by_platform().await.unwrap();
        let summary: Vec<(String, i64, i64)> = pending
            .into_iter()
            .map(|p| (p.platform, p.pending, p.retrying))
            .collect();
        assert_eq!(
            summary,
            [("fcm".to_owned(), 1, 1), ("webpush".to_owned(), 1, 0)],
            "{backend}"
        );
        t.remove().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_registrations_never_overshoot_an_owners_limit() {
    use pushwarden_push::store::Upsert;
    const MAX: i64 = 5;
    for (backend, t) in support::both().await {
        let s = t.store.clone();
        // 60 new devices of one owner at once, against a limit of 5.
        let attempts = (0..60).map(|n| {
            let s = s.clone();
            let mut r = device(&format!("owner-a_{n}"), "u", Platform::Fcm, 0);
            r.owner = Some("owner-a".into());
            tokio::spawn(async move { s.registrations().upsert_within(&r, MAX).await })
        });
        let mut stored = 0;
        let mut refused = 0;
        for attempt in attempts.collect::<Vec<_>>() {
            match attempt.await.unwrap().unwrap() {
                Upsert::Stored => stored += 1,
                Upsert::LimitReached { owned } => {
                    assert_eq!(owned, MAX, "{backend}");
                    refused += 1;
                }
            }
        }
        assert_eq!((stored, refused), (MAX, 60 - MAX), "{backend}");
        assert_eq!(
            s.registrations().count_owned("owner-a").await.unwrap(),
            MAX,
            "{backend}"
        );
        // Updating a device the owner already has is not a new registration.
        let mut existing = None;
        for n in 0..60 {
            existing = s
                .registrations()
                .get(&format!("owner-a_{n}"))
                .await
                .unwrap();
            if existing.is_some() {
                break;
            }
        }
        let existing = existing.expect("a stored device");
        assert_eq!(
            s.registrations()
                .upsert_within(&existing, MAX)
                .await
                .unwrap(),
            Upsert::Stored,
            "{backend}"
        );
        t.remove().await;
    }
}

#[tokio::test]
async fn the_relay_outbox_keeps_order_and_retries() {
    for (backend, t) in support::both().await {
        let s = &t.store;
        s.outbox()
            .add("POST", "push/register", "{\"a\":1}", 1_000)
            .await
            .unwrap();
        s.outbox()
            .add("POST", "push/send", "{\"b\":2}", 1_001)
            .await
            .unwrap();
        let lease = Duration::from_secs(30);
        let items = s.outbox().claim(2_000, lease, 10).await.unwrap();
        assert_eq!(items.len(), 2, "{backend}");
        assert_eq!(
            items[0].path, "push/register",
            "{backend}: in the order added"
        );
        assert!(
            s.outbox().claim(2_000, lease, 10).await.unwrap().is_empty(),
            "{backend}"
        );
        s.outbox().settle(&[items[0].id.clone()]).await.unwrap();
        let plan = RetryPlan {
            attempts: 1,
            next_attempt_ms: 9_000,
            error: "503".into(),
        };
        s.outbox().retry(&items[1].id, &plan).await.unwrap();
        assert_eq!(s.outbox().pending().await.unwrap(), 1, "{backend}");
        assert_eq!(
            s.outbox().next_due_ms().await.unwrap(),
            Some(9_000),
            "{backend}"
        );
        // A newer request, due at once, still waits behind the one being retried.
        s.outbox()
            .add("POST", "push/send", "{\"c\":3}", 2_500)
            .await
            .unwrap();
        assert!(
            s.outbox().claim(8_999, lease, 10).await.unwrap().is_empty(),
            "{backend}"
        );
        let again = s.outbox().claim(9_000, lease, 10).await.unwrap();
        assert_eq!(again.len(), 2, "{backend}");
        assert_eq!(
            (again[0].attempts, again[0].body.as_str()),
            (1, "{\"b\":2}"),
            "{backend}"
        );
        assert_eq!(again[1].body, "{\"c\":3}", "{backend}");
        // Released items come back in the same order.
        s.outbox().release(&[again[1].id.clone()]).await.unwrap();
        s.outbox().settle(&[again[0].id.clone()]).await.unwrap();
        assert_eq!(
            s.outbox().claim(9_001, lease, 10).await.unwrap()[0].body,
            "{\"c\":3}"
        );
        t.remove().await;
    }
}
