-- Fleet schema, migration 2: who may do what. Every station logs in as its own role (named
-- like the station, a member of fleet_station) and may insert and read only its own rows
-- (row level security on station = current_user). fleet_reader (the quality team,
-- `station history`, `station report summary --db`) reads everything and writes nothing.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fleet_station') THEN
        CREATE ROLE fleet_station NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fleet_reader') THEN
        CREATE ROLE fleet_reader NOLOGIN;
    END IF;
END $$;

REVOKE ALL ON SCHEMA fleet FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA fleet FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA fleet FROM PUBLIC;
GRANT USAGE ON SCHEMA fleet TO fleet_station, fleet_reader;

-- Stations: insert and select only, never update or delete.
GRANT SELECT, INSERT ON fleet.stations, fleet.units, fleet.runs, fleet.steps,
                        fleet.measurements TO fleet_station;
GRANT USAGE ON SEQUENCE fleet.runs_id_seq TO fleet_station;
GRANT EXECUTE ON FUNCTION fleet.ship_report(jsonb, text, text), fleet.to_ts(text),
                          fleet.to_num(text) TO fleet_station;
GRANT SELECT ON ALL TABLES IN SCHEMA fleet TO fleet_reader;

ALTER TABLE fleet.stations ENABLE ROW LEVEL SECURITY;
ALTER TABLE fleet.units ENABLE ROW LEVEL SECURITY;
ALTER TABLE fleet.runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE fleet.steps ENABLE ROW LEVEL SECURITY;
ALTER TABLE fleet.measurements ENABLE ROW LEVEL SECURITY;

CREATE POLICY station_own ON fleet.stations TO fleet_station
    USING (name = current_user) WITH CHECK (name = current_user);
CREATE POLICY station_own ON fleet.units TO fleet_station
    USING (first_station = current_user) WITH CHECK (first_station = current_user);
CREATE POLICY station_own ON fleet.runs TO fleet_station
    USING (station = current_user) WITH CHECK (station = current_user);
CREATE POLICY station_own ON fleet.steps TO fleet_station
    USING (station = current_user) WITH CHECK (station = current_user);
CREATE POLICY station_own ON fleet.measurements TO fleet_station
    USING (station = current_user) WITH CHECK (station = current_user);

CREATE POLICY read_all ON fleet.stations FOR SELECT TO fleet_reader USING (true);
CREATE POLICY read_all ON fleet.units FOR SELECT TO fleet_reader USING (true);
CREATE POLICY read_all ON fleet.runs FOR SELECT TO fleet_reader USING (true);
CREATE POLICY read_all ON fleet.steps FOR SELECT TO fleet_reader USING (true);
CREATE POLICY read_all ON fleet.measurements FOR SELECT TO fleet_reader USING (true);
