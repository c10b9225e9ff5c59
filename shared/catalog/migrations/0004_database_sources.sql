-- Database sources (issue 6): a source's database password is kept apart from its
-- spec, so that no response, export or log built from the spec can carry it.
ALTER TABLE sources ADD COLUMN secret text;

-- Which parts a backup holds (files, database); older backups hold files only.
ALTER TABLE backups ADD COLUMN parts text[] NOT NULL DEFAULT ARRAY['files'];
