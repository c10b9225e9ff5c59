-- User accounts with password login (issue 18), and their sessions. A session row is
-- what makes a session token work: logging out revokes it, deleting the user deletes it.
CREATE TABLE users (
    id text PRIMARY KEY,
    -- As the user wrote it; `email_key` (lower case) is what must be unique.
    email text NOT NULL,
    email_key text NOT NULL UNIQUE,
    role text NOT NULL CHECK (role IN ('viewer', 'backup_operator', 'admin')),
    -- argon2id, PHC string format. Never returned by the API.
    password_hash text NOT NULL,
    created_by text,
    created_at timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz
);

CREATE TABLE user_sessions (
    id text PRIMARY KEY,
    user_id text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    client text
);
CREATE INDEX user_sessions_user ON user_sessions (user_id);
CREATE INDEX user_sessions_expires ON user_sessions (expires_at);
