//! Every route this client calls, by method and path template as the OpenAPI document
//! names them. Methods build their URLs from these constants only, and strata-tests
//! checks that every operation of the server's document is one of [`ALL`] (or one of
//! the [`ALIASES`] of a route here), so a route cannot be added to the server without a
//! client method.

/// One route: an HTTP method and a path template (`{name}` for a parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
}

macro_rules! routes {
    ($($name:ident = $method:literal $path:literal;)*) => {
        $(pub const $name: Route = Route { method: $method, path: $path };)*
        /// Every route of the API this client has a method for.
        pub const ALL: &[Route] = &[$($name),*];
    };
}

routes! {
    LIVEZ = "GET" "/livez";
    READYZ = "GET" "/readyz";
    HEALTH = "GET" "/api/v1/health";
    CREATE_SOURCE = "POST" "/api/v1/sources";
    LIST_SOURCES = "GET" "/api/v1/sources";
    GET_SOURCE = "GET" "/api/v1/sources/{id}";
    DELETE_SOURCE = "DELETE" "/api/v1/sources/{id}";
    CREATE_BACKUP = "POST" "/api/v1/backup";
    LIST_BACKUPS = "GET" "/api/v1/backup";
    UPLOAD_BACKUP = "POST" "/api/v1/backup/upload";
    PRUNE = "POST" "/api/v1/backup/prune";
    CREATE_SCHEDULE = "POST" "/api/v1/backup/schedule";
    LIST_SCHEDULES = "GET" "/api/v1/backup/schedule";
    GET_SCHEDULE = "GET" "/api/v1/backup/schedule/{schedule_id}";
    UPDATE_SCHEDULE = "PUT" "/api/v1/backup/schedule/{schedule_id}";
    DELETE_SCHEDULE = "DELETE" "/api/v1/backup/schedule/{schedule_id}";
    RESTORE_BACKUP = "POST" "/api/v1/backup/{backup_id}/restore";
    VERIFY_BACKUP = "POST" "/api/v1/backup/{backup_id}/verify";
    DOWNLOAD_BACKUP = "GET" "/api/v1/backup/{backup_id}/download";
    TREE = "GET" "/api/v1/backup/{backup_id}/tree";
    FILE = "GET" "/api/v1/backup/{backup_id}/file";
    DIFF = "GET" "/api/v1/backup/{backup_id}/diff";
    GET_BACKUP = "GET" "/api/v1/backup/{backup_id}";
    DELETE_BACKUP = "DELETE" "/api/v1/backup/{backup_id}";
    SEARCH = "GET" "/api/v1/search";
    LIST_JOBS = "GET" "/api/v1/jobs";
    GET_JOB = "GET" "/api/v1/jobs/{job_id}";
    JOB_EVENTS = "GET" "/api/v1/jobs/{job_id}/events";
    CANCEL_JOB = "POST" "/api/v1/jobs/{job_id}/cancel";
    EXPORT_CONFIG = "GET" "/api/v1/config/export";
    IMPORT_CONFIG = "POST" "/api/v1/config/import";
    CREATE_KEY = "POST" "/api/v1/keys";
    LIST_KEYS = "GET" "/api/v1/keys";
    REVOKE_KEY = "DELETE" "/api/v1/keys/{id}";
    FILE_TOKEN = "POST" "/api/v1/files/token";
    AUDIT = "GET" "/api/v1/audit";
    CREATE_USER = "POST" "/api/v1/users";
    LIST_USERS = "GET" "/api/v1/users";
    DELETE_USER = "DELETE" "/api/v1/users/{user_id}";
    LOGIN = "POST" "/api/v1/auth/login";
    LOGOUT = "POST" "/api/v1/auth/logout";
    ME = "GET" "/api/v1/auth/me";
    CHANGE_PASSWORD = "POST" "/api/v1/auth/password";
    GC = "POST" "/api/v1/repository/gc";
    OPENAPI = "GET" "/api/v1/openapi.json";
    DOCS = "GET" "/api/v1/docs";
    PB_SUPERUSER_LOGIN = "POST" "/api/collections/_superusers/auth-with-password";
    PB_ADMIN_LOGIN = "POST" "/api/admins/auth-with-password";
    PB_HEALTH = "GET" "/api/health";
    PB_FILE_TOKEN = "POST" "/api/files/token";
    PB_LIST = "GET" "/api/backups";
    PB_CREATE = "POST" "/api/backups";
    PB_UPLOAD = "POST" "/api/backups/upload";
    PB_DOWNLOAD = "GET" "/api/backups/{key}";
    PB_DELETE = "DELETE" "/api/backups/{key}";
    PB_RESTORE = "POST" "/api/backups/{key}/restore";
}

/// Other paths of the same operations (the seeds' spellings): `(alias, route)`.
pub const ALIASES: &[(Route, Route)] = &[
    (
        Route {
            method: "POST",
            path: "/api/v1/backup/create",
        },
        CREATE_BACKUP,
    ),
    (
        Route {
            method: "GET",
            path: "/api/v1/backup/list",
        },
        LIST_BACKUPS,
    ),
    (
        Route {
            method: "POST",
            path: "/api/v1/backup/restore/{backup_id}",
        },
        RESTORE_BACKUP,
    ),
    (
        Route {
            method: "GET",
            path: "/api/v1/backup/restore/{job_id}/status",
        },
        GET_JOB,
    ),
];

impl Route {
    /// The path with each `{parameter}` replaced, in order, by a value, percent-encoded
    /// as one path segment (a `/` or `..` in a value cannot reach another route). An
    /// empty value is refused: it would name another route.
    pub fn path_with(&self, values: &[&str]) -> Result<String, crate::Error> {
        let mut out = String::with_capacity(self.path.len() + 40);
        let mut values = values.iter();
        for (i, segment) in self.path.split('/').enumerate() {
            if i > 0 {
                out.push('/');
            }
            if segment.starts_with('{') && segment.ends_with('}') {
                let v = values.next().expect("a value for every path parameter");
                if v.is_empty() {
                    let name = &segment[1..segment.len() - 1];
                    return Err(crate::Error::invalid_input(
                        name,
                        format!("{name} is empty"),
                    ));
                }
                out.push_str(&encode_segment(v));
            } else {
                out.push_str(segment);
            }
        }
        debug_assert!(values.next().is_none(), "more values than parameters");
        Ok(out)
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters; `.` and `..` become
/// `%2E` / `%2E%2E` so no value is a dot segment.
fn encode_segment(v: &str) -> String {
    if v.chars().all(|c| c == '.') {
        return v.bytes().map(|_| "%2E").collect::<String>();
    }
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_one_segment_each() {
        assert_eq!(
            GET_BACKUP.path_with(&["../keys"]).unwrap(),
            "/api/v1/backup/..%2Fkeys"
        );
        assert_eq!(
            GET_BACKUP.path_with(&[".."]).unwrap(),
            "/api/v1/backup/%2E%2E"
        );
        assert_eq!(
            TREE.path_with(&["bk_1 ?#"]).unwrap(),
            "/api/v1/backup/bk_1%20%3F%23/tree"
        );
        assert_eq!(
            GET_BACKUP.path_with(&[""]).unwrap_err().field(),
            Some("backup_id")
        );
    }
}
