//! Roles, ordered by power: every role can do what the roles below it can.

use std::fmt;
use strata_core::errors::ErrorCode;

use serde::{Deserialize, Serialize};

use strata_core::model::FieldError;

/// What a caller may do. The derived order is the order of power:
/// `Viewer < BackupOperator < Admin`, so "may do X" is `caller >= required`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads backups, jobs, health details and sources (without secrets).
    Viewer,
    /// A viewer that may also create and verify backups.
    BackupOperator,
    /// Everything.
    Admin,
}

impl Role {
    /// Every role, least powerful first.
    pub const ALL: &'static [Role] = &[Role::Viewer, Role::BackupOperator, Role::Admin];

    /// The wire form (`viewer`, `backup_operator`, `admin`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::BackupOperator => "backup_operator",
            Role::Admin => "admin",
        }
    }

    /// Parses the wire form; the error (field `role`) lists the valid values.
    pub fn parse(value: &str) -> Result<Role, FieldError> {
        Self::from_wire(value).ok_or_else(|| {
            FieldError::new(
                ErrorCode::InvalidRole,
                "role",
                format!(
                    "{value:?} is not valid; expected one of: {}",
                    Self::ALL
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })
    }

    /// Like [`Role::parse`] without building an error (used on claims of tokens,
    /// whose content must not be echoed).
    pub fn from_wire(value: &str) -> Option<Role> {
        Self::ALL.iter().copied().find(|r| r.as_str() == value)
    }

    /// Whether a caller with this role may do what needs `required`.
    pub fn allows(self, required: Role) -> bool {
        self >= required
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_power() {
        assert!(Role::Viewer < Role::BackupOperator);
        assert!(Role::BackupOperator < Role::Admin);
        assert!(Role::Admin.allows(Role::Viewer));
        assert!(Role::Admin.allows(Role::Admin));
        assert!(Role::BackupOperator.allows(Role::Viewer));
        assert!(!Role::BackupOperator.allows(Role::Admin));
        assert!(!Role::Viewer.allows(Role::BackupOperator));
        assert_eq!(Role::ALL.iter().max(), Some(&Role::Admin));
    }

    #[test]
    fn role_parse_round_trips_and_lists_valid_values() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()).unwrap(), *role);
            assert_eq!(role.to_string(), role.as_str());
            let json = serde_json::to_string(role).unwrap();
            assert_eq!(json, format!("\"{}\"", role.as_str()));
            assert_eq!(serde_json::from_str::<Role>(&json).unwrap(), *role);
        }
        let err = Role::parse("Admin").unwrap_err();
        assert_eq!(err.code, "invalid_role");
        assert_eq!(err.field, "role");
        assert!(
            err.message.contains("viewer, backup_operator, admin"),
            "{}",
            err.message
        );
        assert!(Role::parse("").is_err());
        assert!(Role::parse("root").is_err());
    }
}
