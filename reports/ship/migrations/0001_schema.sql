-- Fleet schema, migration 1: stations, units (by chip UID, DFU serial, CAN UUID), runs,
-- steps, measurements, the whole report as JSONB, and fleet.ship_report(), the one call
-- a station makes per report. Applied by `station ship --migrate` (reports/FLEET.md).
CREATE SCHEMA IF NOT EXISTS fleet;

CREATE TABLE fleet.stations (
    name        text PRIMARY KEY,               -- the station's database role
    host        text,
    version     text,
    first_seen  timestamptz NOT NULL DEFAULT now()
);

-- A unit, known by the most specific id the engine learnt (unit.identity) and every other
-- id seen with it. Shared by all stations: a unit's history spans them.
CREATE TABLE fleet.units (
    identity      text PRIMARY KEY,
    chip_uid      text,
    dfu_serial    text,
    can_uuid      text,
    chip_id       text,
    mcu           text,
    first_station text NOT NULL DEFAULT current_user,
    first_seen    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE fleet.runs (
    id            bigserial PRIMARY KEY,
    station       text NOT NULL DEFAULT current_user REFERENCES fleet.stations (name),
    run_id        text NOT NULL,
    slot_id       integer NOT NULL,              -- 0: a unit found on a bus, in no slot
    slot_name     text,
    unit_identity text NOT NULL REFERENCES fleet.units (identity),
    chip_uid      text,
    dfu_serial    text,
    can_uuid      text,
    operator      text,
    fixture       text,
    job_name      text,
    job_sha256    text,
    verdict       text NOT NULL CHECK (verdict IN ('pass', 'fail', 'incomplete')),
    cause         text,
    failed_step   text,                          -- first step whose outcome is fail
    started       timestamptz,
    finished      timestamptz,
    duration_ms   double precision,
    report_file   text NOT NULL,                 -- file name on the station
    report_sha256 text NOT NULL,                 -- of the file's bytes
    report        jsonb NOT NULL,                -- the whole report (reports/FLEET.md)
    received_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- Exactly once: one row per run and unit, whatever the shipper retries.
    UNIQUE (station, run_id, slot_id, unit_identity)
);
CREATE INDEX runs_unit ON fleet.runs (unit_identity);
CREATE INDEX runs_dfu_serial ON fleet.runs (lower(dfu_serial)) WHERE dfu_serial IS NOT NULL;
CREATE INDEX runs_can_uuid ON fleet.runs (lower(can_uuid)) WHERE can_uuid IS NOT NULL;
CREATE INDEX runs_chip_uid ON fleet.runs (lower(chip_uid)) WHERE chip_uid IS NOT NULL;
CREATE INDEX runs_started ON fleet.runs (started);

CREATE TABLE fleet.steps (
    run          bigint NOT NULL REFERENCES fleet.runs (id),
    idx          integer NOT NULL,               -- position in steps[], from 0
    station      text NOT NULL DEFAULT current_user,
    name         text NOT NULL,
    outcome      text NOT NULL,
    attempts     integer,
    started      timestamptz,
    duration_ms  double precision,
    error        text,
    device_error text,
    detail       jsonb NOT NULL,                 -- the step's whole map
    PRIMARY KEY (run, idx)
);

-- Measurements a step took (steps[].measurements[] in a report: name, value, unit, low,
-- high, marginal_low, marginal_high, outcome), for the checks of running units.
CREATE TABLE fleet.measurements (
    run           bigint NOT NULL,
    step_idx      integer NOT NULL,
    idx           integer NOT NULL,
    station       text NOT NULL DEFAULT current_user,
    name          text NOT NULL,
    value         double precision,              -- numeric values
    value_text    text,                          -- the value as written
    unit          text,
    low           double precision,
    high          double precision,
    marginal_low  double precision,
    marginal_high double precision,
    outcome       text,
    detail        jsonb NOT NULL,
    PRIMARY KEY (run, step_idx, idx),
    FOREIGN KEY (run, step_idx) REFERENCES fleet.steps (run, idx)
);
CREATE INDEX measurements_name ON fleet.measurements (name);

-- Text to timestamptz / double, NULL (not an error) for anything malformed: report text is
-- untrusted and a bad field must not stop the rest of the report from being stored.
CREATE FUNCTION fleet.to_ts(t text) RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF t !~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$' THEN
        RETURN NULL;
    END IF;
    RETURN t::timestamptz;
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$;

CREATE FUNCTION fleet.to_num(t text) RETURNS double precision LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF t !~ '^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$' THEN
        RETURN NULL;
    END IF;
    RETURN t::double precision;
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$;

-- Store one report. Runs with the caller's rights (row level security applies): the
-- station is always current_user. Returns 'inserted', 'duplicate' (this run and unit are
-- already stored with the same bytes) or 'conflict' (stored with other bytes; the stored
-- row is kept). One statement, so one transaction: all rows of a report or none.
CREATE FUNCTION fleet.ship_report(doc jsonb, file text, sha text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    me    text := current_user;
    ident text := doc #>> '{unit,identity}';
    rid   text := doc #>> '{run,id}';
    slot  text := coalesce(doc #>> '{slot,id}', '0');  -- 0: a unit in no slot
    steps jsonb := CASE WHEN jsonb_typeof(doc -> 'steps') = 'array' THEN doc -> 'steps'
                        ELSE '[]'::jsonb END;
    id    bigint;
    old   text;
BEGIN
    IF jsonb_typeof(doc) <> 'object' OR ident IS NULL OR ident = '' OR rid IS NULL
       OR slot IS NULL OR slot !~ '^\d{1,9}$'
       OR doc ->> 'verdict' NOT IN ('pass', 'fail', 'incomplete') THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'report lacks run.id, unit.identity or a verdict, or has a bad slot.id';
    END IF;
    INSERT INTO fleet.stations (name, host, version)
        VALUES (me, doc #>> '{station,host}', doc #>> '{station,version}')
        ON CONFLICT (name) DO NOTHING;
    INSERT INTO fleet.units (identity, chip_uid, dfu_serial, can_uuid, chip_id, mcu)
        VALUES (ident, doc #>> '{unit,chip_uid}', doc #>> '{unit,dfu_serial}',
                doc #>> '{unit,can_uuid}', doc #>> '{unit,chip_id}', doc #>> '{unit,mcu}')
        ON CONFLICT (identity) DO NOTHING;
    INSERT INTO fleet.runs (station, run_id, slot_id, slot_name, unit_identity, chip_uid,
                            dfu_serial, can_uuid, operator, fixture, job_name, job_sha256,
                            verdict, cause, failed_step, started, finished, duration_ms,
                            report_file, report_sha256, report)
        VALUES (me, rid, slot::integer, doc #>> '{slot,name}', ident,
                doc #>> '{unit,chip_uid}', doc #>> '{unit,dfu_serial}',
                doc #>> '{unit,can_uuid}', doc ->> 'operator', doc #>> '{fixture,name}',
                doc #>> '{job,name}', doc #>> '{job,sha256}', doc ->> 'verdict',
                doc ->> 'cause',
                (SELECT e ->> 'name' FROM jsonb_array_elements(steps) WITH ORDINALITY s(e, o)
                  WHERE e ->> 'outcome' = 'fail' ORDER BY o LIMIT 1),
                fleet.to_ts(doc #>> '{run,started}'), fleet.to_ts(doc #>> '{run,finished}'),
                fleet.to_num(doc #>> '{run,duration_ms}'), file, sha, doc)
        ON CONFLICT (station, run_id, slot_id, unit_identity) DO NOTHING
        RETURNING runs.id INTO id;
    IF id IS NULL THEN
        SELECT r.report_sha256 INTO old FROM fleet.runs r
         WHERE r.station = me AND r.run_id = rid AND r.slot_id = slot::integer
           AND r.unit_identity = ident;
        RETURN CASE WHEN old = sha THEN 'duplicate' ELSE 'conflict' END;
    END IF;
    INSERT INTO fleet.steps (run, idx, station, name, outcome, attempts, started, duration_ms,
                             error, device_error, detail)
        SELECT id, (o - 1)::integer, me, coalesce(e ->> 'name', ''),
               coalesce(e ->> 'outcome', ''),
               CASE WHEN e ->> 'attempts' ~ '^\d{1,9}$' THEN (e ->> 'attempts')::integer END,
               fleet.to_ts(e ->> 'started'), fleet.to_num(e ->> 'duration_ms'),
               e ->> 'error', e ->> 'device_error', e
          FROM jsonb_array_elements(steps) WITH ORDINALITY s(e, o)
         WHERE jsonb_typeof(e) = 'object';
    INSERT INTO fleet.measurements (run, step_idx, idx, station, name, value, value_text, unit,
                                    low, high, marginal_low, marginal_high, outcome, detail)
        SELECT id, (so - 1)::integer, (mo - 1)::integer, me, coalesce(m ->> 'name', ''),
               fleet.to_num(m ->> 'value'), m ->> 'value', m ->> 'unit',
               fleet.to_num(m ->> 'low'), fleet.to_num(m ->> 'high'),
               fleet.to_num(m ->> 'marginal_low'), fleet.to_num(m ->> 'marginal_high'),
               m ->> 'outcome', m
          FROM jsonb_array_elements(steps) WITH ORDINALITY s(e, so),
               jsonb_array_elements(CASE WHEN jsonb_typeof(e -> 'measurements') = 'array'
                                         THEN e -> 'measurements' ELSE '[]'::jsonb END)
               WITH ORDINALITY ms(m, mo)
         WHERE jsonb_typeof(e) = 'object' AND jsonb_typeof(m) = 'object';
    RETURN 'inserted';
END $$;
