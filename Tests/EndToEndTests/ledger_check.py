"""An independent reader of several agents' audit logs and their PostgreSQL ledger (custodian's own code is not used).

    ledger_check.py --database DB --host DIR [--port P] [--received FILE] STATE_DIR...

Checks, exiting 1 with every violation listed:
  - each log is a chain (seq 1, 2, …; prev = SHA-256 of the line before) across its segment files;
  - the database's transactions are numbered 1…N without a gap; each one's batch is, byte for byte, the records
    first_seq…last_seq of exactly one log, the one whose state directory's ledger.agent names its agent;
  - every record a log wrote in a ledger transaction (ledger_txn) is in that transaction's batch: every decision in
    the database is in exactly one log, and the reverse;
  - across all logs, one content per (session, version): one create per session, one state per submitted version,
    one close per session (identical retries count once);
  - every signature in --received (one per line: what clients were given) is an allowance in a log and in the
    database.
Prints a one-line summary of what it read.
"""

import argparse
import glob
import hashlib
import json
import os
import subprocess
import sys


def log_files(state_dir):
    sealed = sorted(glob.glob(os.path.join(state_dir, "audit-*-*.log")))
    active = os.path.join(state_dir, "audit.log")
    return sealed + ([active] if os.path.exists(active) else [])


def read_log(state_dir, problems):
    """The records of a state directory's log: {seq: (line_bytes, record)}."""
    records = {}
    expected_seq = None
    prev = None
    for path in log_files(state_dir):
        with open(path, "rb") as handle:
            data = handle.read()
        for raw in data.split(b"\n"):
            if not raw:
                continue
            record = json.loads(raw)
            seq = record["seq"]
            if expected_seq is not None and seq != expected_seq:
                problems.append(f"{path}: seq {seq} where {expected_seq} was expected")
            if prev is not None and record["prev"] != prev:
                problems.append(f"{path}: seq {seq} does not chain onto the line before")
            prev = hashlib.sha256(raw).hexdigest()
            expected_seq = seq + 1
            records[seq] = (raw, record)
    return records


def database_transactions(database, host, port):
    query = (
        "SELECT txn, agent, first_seq, last_seq, encode(batch, 'hex') FROM custodian_txns ORDER BY txn"
    )
    output = subprocess.run(
        ["psql", "-h", host, "-p", port, "-U", "postgres", "-d", database, "-qtAX", "-F", "|", "-c", query],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    transactions = []
    for line in output.splitlines():
        if not line:
            continue
        txn, agent, first, last, batch = line.split("|", 4)
        transactions.append((int(txn), agent, int(first), int(last), bytes.fromhex(batch)))
    return transactions


def content_key(record):
    """(key, content) of an allowance, from its req alone; None for what is not a v0 app-session decision."""
    req = json.loads(record["req"])
    if not isinstance(req, list) or len(req) < 3:
        return None
    method, params = req[1], req[2]
    session = record.get("app_session_id")
    canonical = lambda value: json.dumps(value, sort_keys=True, separators=(",", ":"))
    if method == "create_app_session":
        return (session, "create"), canonical([params["definition"], params["allocations"]])
    if method == "submit_app_state":
        return (session, "version", params.get("version")), canonical(
            [params["allocations"], params.get("session_data")]
        )
    if method == "close_app_session":
        return (session, "close"), canonical(params["allocations"])
    return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", default="5432")
    parser.add_argument("--received")
    parser.add_argument("state_dirs", nargs="+")
    arguments = parser.parse_args()
    problems = []

    logs = {}
    for state_dir in arguments.state_dirs:
        with open(os.path.join(state_dir, "ledger.agent")) as handle:
            agent = handle.read().strip()
        logs[agent] = read_log(state_dir, problems)

    transactions = database_transactions(arguments.database, arguments.host, arguments.port)
    in_database = set()
    for index, (txn, agent, first, last, batch) in enumerate(transactions):
        if txn != index + 1:
            problems.append(f"transaction {txn} where {index + 1} was expected")
        if agent not in logs:
            problems.append(f"transaction {txn} of agent {agent}, whose log was not given")
            continue
        lines = [line for line in batch.split(b"\n") if line]
        if len(lines) != last - first + 1:
            problems.append(f"transaction {txn}: {len(lines)} records for seqs {first}…{last}")
        for offset, line in enumerate(lines):
            seq = first + offset
            logged = logs[agent].get(seq)
            if logged is None or logged[0] != line:
                problems.append(f"transaction {txn}: record {seq} is not in agent {agent}'s log as committed")
            record = json.loads(line)
            if record.get("ledger_txn") != txn:
                problems.append(f"transaction {txn}: record {seq} names ledger_txn {record.get('ledger_txn')}")
            in_database.add((agent, seq))
        for other, records in logs.items():
            if other != agent and any(records.get(seq, (b"",))[0] in lines for seq in range(first, last + 1)):
                problems.append(f"transaction {txn}: its records are in the log of agent {other} too")

    contents = {}
    signatures_logged = set()
    decisions = 0
    for agent, records in logs.items():
        for seq, (raw, record) in records.items():
            if "ledger_txn" in record and (agent, seq) not in in_database:
                problems.append(
                    f"agent {agent}: record {seq} (ledger_txn {record['ledger_txn']}) is not in the database"
                )
            if record.get("event") != "sign" or record.get("decision") != "allow":
                continue
            decisions += 1
            signatures_logged.add(record["signature"])
            if "ledger_txn" not in record:
                problems.append(f"agent {agent}: allowance {seq} outside any ledger transaction")
            keyed = content_key(record)
            if keyed is not None:
                key, content = keyed
                contents.setdefault(key, set()).add(content)
    for key, seen in contents.items():
        if len(seen) > 1:
            problems.append(f"{len(seen)} different contents signed for {key}: {sorted(seen)}")

    received = []
    if arguments.received:
        with open(arguments.received) as handle:
            received = [line.strip() for line in handle if line.strip()]
    for signature in received:
        if signature not in signatures_logged:
            problems.append(f"a signature a client received is in no log: {signature}")

    for problem in problems:
        print(problem)
    print(
        f"ledger_check: {len(logs)} logs, {sum(len(r) for r in logs.values())} records, {decisions} allowances, "
        f"{len(transactions)} database transactions, {len(contents)} (session, version) keys, "
        f"{len(received)} received signatures; {len(problems)} problem(s)"
    )
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
