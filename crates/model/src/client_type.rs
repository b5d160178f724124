//! Bitwarden's `ClientType` and how a device type maps to it (`DeviceTypes.ToClientType`).

/// `ClientType` (`src/Core/Enums/ClientType.cs`). Group names use the member name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientType {
    All = 0,
    Web = 1,
    Browser = 2,
    Desktop = 3,
    Mobile = 4,
    Cli = 5,
}

impl ClientType {
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0 => ClientType::All,
            1 => ClientType::Web,
            2 => ClientType::Browser,
            3 => ClientType::Desktop,
            4 => ClientType::Mobile,
            5 => ClientType::Cli,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ClientType::All => "All",
            ClientType::Web => "Web",
            ClientType::Browser => "Browser",
            ClientType::Desktop => "Desktop",
            ClientType::Mobile => "Mobile",
            ClientType::Cli => "Cli",
        }
    }

    /// The client type of a `devicetype` claim, which holds a `DeviceType` member name (as
    /// Bitwarden's identity server writes it) or its number; anything else is `All`.
    pub fn from_device_type_claim(claim: &str) -> Self {
        let number = claim
            .parse::<u8>()
            .ok()
            .or_else(|| device_type_number(claim));
        number.map_or(ClientType::All, Self::from_device_type)
    }

    /// `DeviceTypes.ToClientType`.
    pub fn from_device_type(device_type: u8) -> Self {
        match device_type {
            0 | 1 | 15 => ClientType::Mobile,
            6 | 7 | 8 | 16 => ClientType::Desktop,
            23..=25 => ClientType::Cli,
            2..=5 | 19 | 20 => ClientType::Browser,
            9..=14 | 17 | 18 | 26 => ClientType::Web,
            _ => ClientType::All,
        }
    }
}

/// `DeviceType` member names (`src/Core/Enums/DeviceType.cs`), matched case-insensitively as
/// `Enum.TryParse(..., ignoreCase: true)` would.
fn device_type_number(name: &str) -> Option<u8> {
    const NAMES: [&str; 27] = [
        "Android",
        "iOS",
        "ChromeExtension",
        "FirefoxExtension",
        "OperaExtension",
        "EdgeExtension",
        "WindowsDesktop",
        "MacOsDesktop",
        "LinuxDesktop",
        "ChromeBrowser",
        "FirefoxBrowser",
        "OperaBrowser",
        "EdgeBrowser",
        "IEBrowser",
        "UnknownBrowser",
        "AndroidAmazon",
        "UWP",
        "SafariBrowser",
        "VivaldiBrowser",
        "VivaldiExtension",
        "SafariExtension",
        "SDK",
        "Server",
        "WindowsCLI",
        "MacOsCLI",
        "LinuxCLI",
        "DuckDuckGoBrowser",
    ];
    NAMES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(name))
        .map(|i| i as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_types_map_as_bitwarden_does() {
        assert_eq!(
            ClientType::from_device_type_claim("Android"),
            ClientType::Mobile
        );
        assert_eq!(
            ClientType::from_device_type_claim("ChromeBrowser"),
            ClientType::Web
        );
        assert_eq!(
            ClientType::from_device_type_claim("chromeextension"),
            ClientType::Browser
        );
        assert_eq!(ClientType::from_device_type_claim("8"), ClientType::Desktop);
        assert_eq!(
            ClientType::from_device_type_claim("LinuxCLI"),
            ClientType::Cli
        );
        assert_eq!(ClientType::from_device_type_claim("SDK"), ClientType::All);
        assert_eq!(
            ClientType::from_device_type_claim("Server"),
            ClientType::All
        );
        assert_eq!(
            ClientType::from_device_type_claim("nonsense"),
            ClientType::All
        );
        assert_eq!(ClientType::from_device_type_claim("26"), ClientType::Web);
        assert_eq!(ClientType::from_device_type_claim("99"), ClientType::All);
    }
}
