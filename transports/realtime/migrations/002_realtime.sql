-- Realtime: client roles, row-level security on job_events, and the publication.
--
-- The services connect as the owner or as BYPASSRLS roles (kit/roles.py) and bypass RLS (not FORCEd);
-- the realtime server checks each change for each subscriber under the
-- subscriber's claims: SET LOCAL role + request.jwt.claims, as Supabase does.
-- Roles are cluster-wide, so they are created only if missing (a shared
-- DATABASE_URL server may already have them).

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        CREATE ROLE anon NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        CREATE ROLE authenticated NOLOGIN NOINHERIT;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO anon, authenticated;
GRANT SELECT ON job_events TO anon, authenticated;

ALTER TABLE job_events ENABLE ROW LEVEL SECURITY;

-- A signed-in user reads the events of their own jobs. anon has no policy:
-- it sees nothing (the "forgot setAuth" trap).
DROP POLICY IF EXISTS job_events_owner_read ON job_events;
CREATE POLICY job_events_owner_read ON job_events
    FOR SELECT TO authenticated
    USING (owner = (current_setting('request.jwt.claims', true)::json ->> 'sub'));

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'supabase_realtime') THEN
        CREATE PUBLICATION supabase_realtime FOR TABLE job_events;
    ELSIF NOT EXISTS (
        SELECT 1 FROM pg_publication_tables
        WHERE pubname = 'supabase_realtime' AND schemaname = 'public' AND tablename = 'job_events'
    ) THEN
        ALTER PUBLICATION supabase_realtime ADD TABLE job_events;
    END IF;
END
$$;
