-- A database source's secrets are every secret parameter of its connection URL
-- (`password`, `sslpassword`), not only its password (issue 16): one JSON object,
-- never returned by the API. The passwords stored so far become {"password": …}.
ALTER TABLE sources ALTER COLUMN secret TYPE jsonb
    USING CASE WHEN secret IS NULL THEN NULL ELSE jsonb_build_object('password', secret) END;
