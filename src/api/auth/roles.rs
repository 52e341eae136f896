//! Roles: what a user or token may do, and how they nest.

use serde::{Deserialize, Serialize};

/// A role: what a user or token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads incidents, feeds, notices, the stream and the wall.
    Viewer,
    /// Viewer, plus approve/reject/edit notices, close and merge incidents, pause publishing.
    Operator,
    /// Everything: users, tokens, rules reload.
    Admin,
    /// Only `POST /api/mentions` (and `POST /api/cases`, Open311 requests).
    Ingest,
    /// A department's staff: its own citizen requests only (the cases stage's `[cases.members]`
    /// names each one's department; not listed there, nothing).
    Department,
}

impl Role {
    /// Every role, for help texts and validation.
    pub const ALL: [Role; 5] = [
        Role::Viewer,
        Role::Operator,
        Role::Admin,
        Role::Ingest,
        Role::Department,
    ];

    /// The name used in files, the API and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Ingest => "ingest",
            Role::Department => "department",
        }
    }

    /// Whether this role may do what `need` allows. Admin may do everything; operator what a
    /// viewer or a department may; ingest only ingest; a department only department routes.
    pub fn allows(self, need: Role) -> bool {
        matches!(
            (self, need),
            (Role::Admin, _)
                | (
                    Role::Operator,
                    Role::Operator | Role::Viewer | Role::Department
                )
                | (Role::Viewer, Role::Viewer)
                | (Role::Ingest, Role::Ingest)
                | (Role::Department, Role::Department)
        )
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("unknown role {s:?} (viewer, operator, admin, ingest, department)")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_nest_except_ingest() {
        let table = [
            (Role::Admin, [true, true, true, true, true]),
            (Role::Operator, [true, true, false, false, true]),
            (Role::Viewer, [true, false, false, false, false]),
            (Role::Ingest, [false, false, false, true, false]),
            (Role::Department, [false, false, false, false, true]),
        ];
        for (have, allowed) in table {
            for (need, want) in Role::ALL.into_iter().zip(allowed) {
                assert_eq!(have.allows(need), want, "{have} → {need}");
            }
        }
    }
}
