//! Bitwarden's `PushType` (`src/Core/Platform/Push/PushType.cs`): what changed.

/// Every push type Bitwarden's server defines, 0 to 27, contiguous.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PushType {
    SyncCipherUpdate = 0,
    SyncCipherCreate = 1,
    SyncLoginDelete = 2,
    SyncFolderDelete = 3,
    SyncCiphers = 4,
    SyncVault = 5,
    SyncOrgKeys = 6,
    SyncFolderCreate = 7,
    SyncFolderUpdate = 8,
    SyncCipherDelete = 9,
    SyncSettings = 10,
    LogOut = 11,
    SyncSendCreate = 12,
    SyncSendUpdate = 13,
    SyncSendDelete = 14,
    AuthRequest = 15,
    AuthRequestResponse = 16,
    SyncOrganizations = 17,
    SyncOrganizationStatusChanged = 18,
    SyncOrganizationCollectionSettingChanged = 19,
    Notification = 20,
    NotificationStatus = 21,
    RefreshSecurityTasks = 22,
    OrganizationBankAccountVerified = 23,
    ProviderBankAccountVerified = 24,
    PolicyChanged = 25,
    AutoConfirm = 26,
    PremiumStatusChanged = 27,
}

impl PushType {
    pub const ALL: [PushType; 28] = [
        PushType::SyncCipherUpdate,
        PushType::SyncCipherCreate,
        PushType::SyncLoginDelete,
        PushType::SyncFolderDelete,
        PushType::SyncCiphers,
        PushType::SyncVault,
        PushType::SyncOrgKeys,
        PushType::SyncFolderCreate,
        PushType::SyncFolderUpdate,
        PushType::SyncCipherDelete,
        PushType::SyncSettings,
        PushType::LogOut,
        PushType::SyncSendCreate,
        PushType::SyncSendUpdate,
        PushType::SyncSendDelete,
        PushType::AuthRequest,
        PushType::AuthRequestResponse,
        PushType::SyncOrganizations,
        PushType::SyncOrganizationStatusChanged,
        PushType::SyncOrganizationCollectionSettingChanged,
        PushType::Notification,
        PushType::NotificationStatus,
        PushType::RefreshSecurityTasks,
        PushType::OrganizationBankAccountVerified,
        PushType::ProviderBankAccountVerified,
        PushType::PolicyChanged,
        PushType::AutoConfirm,
        PushType::PremiumStatusChanged,
    ];

    pub fn from_u8(value: u8) -> Option<Self> {
        Self::ALL.get(usize::from(value)).copied()
    }

    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The C# member name, used as a metric label and in logs.
    pub fn name(self) -> &'static str {
        match self {
            PushType::SyncCipherUpdate => "SyncCipherUpdate",
            PushType::SyncCipherCreate => "SyncCipherCreate",
            PushType::SyncLoginDelete => "SyncLoginDelete",
            PushType::SyncFolderDelete => "SyncFolderDelete",
            PushType::SyncCiphers => "SyncCiphers",
            PushType::SyncVault => "SyncVault",
            PushType::SyncOrgKeys => "SyncOrgKeys",
            PushType::SyncFolderCreate => "SyncFolderCreate",
            PushType::SyncFolderUpdate => "SyncFolderUpdate",
            PushType::SyncCipherDelete => "SyncCipherDelete",
            PushType::SyncSettings => "SyncSettings",
            PushType::LogOut => "LogOut",
            PushType::SyncSendCreate => "SyncSendCreate",
            PushType::SyncSendUpdate => "SyncSendUpdate",
            PushType::SyncSendDelete => "SyncSendDelete",
            PushType::AuthRequest => "AuthRequest",
            PushType::AuthRequestResponse => "AuthRequestResponse",
            PushType::SyncOrganizations => "SyncOrganizations",
            PushType::SyncOrganizationStatusChanged => "SyncOrganizationStatusChanged",
            PushType::SyncOrganizationCollectionSettingChanged => {
                "SyncOrganizationCollectionSettingChanged"
            }
            PushType::Notification => "Notification",
            PushType::NotificationStatus => "NotificationStatus",
            PushType::RefreshSecurityTasks => "RefreshSecurityTasks",
            PushType::OrganizationBankAccountVerified => "OrganizationBankAccountVerified",
            PushType::ProviderBankAccountVerified => "ProviderBankAccountVerified",
            PushType::PolicyChanged => "PolicyChanged",
            PushType::AutoConfirm => "AutoConfirm",
            PushType::PremiumStatusChanged => "PremiumStatusChanged",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_contiguous_and_round_trip() {
        for (i, t) in PushType::ALL.iter().enumerate() {
            assert_eq!(usize::from(t.as_u8()), i);
            assert_eq!(PushType::from_u8(i as u8), Some(*t));
        }
        assert_eq!(PushType::from_u8(28), None);
    }
}
