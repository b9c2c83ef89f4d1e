-- The least a custodian agent needs on its PostgreSQL ledger. Run as the database's owner, after
--   custodian ledger migrate --ledger-url postgresql://OWNER@…/custodian
-- has created the schema (an agent that may not create tables cannot do it itself):
--   psql -v ON_ERROR_STOP=1 -d custodian -f custodian-ledger.sql
-- Each host's agent then connects as custodian_agent (a password from its PGPASSFILE, or a client certificate).
-- The agents can add transactions and read them; none can change or delete one, nor alter the schema: an agent
-- taken over can refuse to work, but not rewrite the history the other agent and the auditors rely on.
DO $$ BEGIN
    CREATE ROLE custodian_agent LOGIN;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
-- (psql fills in the database it is connected to.)
GRANT CONNECT ON DATABASE :"DBNAME" TO custodian_agent;
GRANT USAGE ON SCHEMA public TO custodian_agent;
GRANT SELECT ON custodian_schema TO custodian_agent;
-- The ledger's one row: its lock and transaction counter, and the key it is bound to (set by the first agent).
GRANT SELECT, UPDATE (txn, address) ON custodian_ledger TO custodian_agent;
GRANT SELECT, INSERT ON custodian_agents TO custodian_agent;
GRANT SELECT, INSERT ON custodian_txns TO custodian_agent;
