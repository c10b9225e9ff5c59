-- API keys: the secret is stored only as a hash; `id` is the public part of the key.
CREATE TABLE api_keys (
    id            text PRIMARY KEY,
    name          text NOT NULL,
    role          text NOT NULL CHECK (role IN ('viewer', 'backup_operator', 'admin')),
    hash          text NOT NULL,
    created_by    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz
);

-- Every mutating request and every denied request.
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    request_id  text NOT NULL,
    actor       text,
    role        text,
    method      text NOT NULL,
    action      text NOT NULL,
    target      text,
    outcome     text NOT NULL CHECK (outcome IN ('allowed', 'denied', 'failed')),
    status      integer NOT NULL,
    client      text
);
CREATE INDEX audit_log_at ON audit_log (at DESC, id DESC);

-- Installation-wide settings shared by every API replica (e.g. the file-token secret).
CREATE TABLE settings (
    key    text PRIMARY KEY,
    value  text NOT NULL
);
