import CPostgres
import CustodianCore
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Why the ledger database could not be used.
public enum LedgerError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Not reachable, refused the login, timed out, or the connection broke: retried by reconnecting.
    case unavailable(String)
    /// The connection broke, or the wait timed out, after COMMIT was sent: the transaction may or may not stand.
    case inDoubt(String)
    /// The server refused a statement (a constraint, a privilege, a serialization failure): the transaction did not
    /// commit.
    case refused(String)
    /// The database does not hold what this agent's evidence says it must, or holds another key's ledger: never
    /// retried by itself.
    case diverged(String)

    public var description: String {
        switch self {
        case .unavailable(let why): "the ledger database is unavailable: \(why)"
        case .inDoubt(let why): "the ledger database may or may not have committed: \(why)"
        case .refused(let why): "the ledger database refused: \(why)"
        case .diverged(let why): "the ledger database and this agent's evidence disagree: \(why)"
        }
    }
}

/// One connection to PostgreSQL through libpq, used by one thread at a time, every call bounded by a deadline:
/// a statement is sent without waiting (`PQsendQueryParams`) and its result read while `poll` allows, so that a
/// server that stops answering (stopped, paused, cut off) makes a call fail after `timeout`, never hang.
///
/// The URL is libpq's (`postgresql://user@host:port/db?sslmode=verify-full`, or `?host=/run/postgresql` for a
/// Unix socket): TLS, passwords from `~/.pgpass` or `PGPASSFILE`, and every other libpq option work as with `psql`.
final class PostgresClient {
    /// A statement's parameter: text, or bytes sent in binary (bytea).
    enum Param {
        case text(String)
        case bytes([UInt8])
        case int(Int64)
    }

    /// A result's rows, each value as text (nil for NULL; bytea as `\x` hex).
    struct Rows {
        var values: [[String?]]
        var affected: Int

        func int(_ row: Int, _ column: Int) -> Int64? {
            guard row < values.count, column < values[row].count, let text = values[row][column] else { return nil }
            return Int64(text)
        }

        func bytes(_ row: Int, _ column: Int) -> [UInt8]? {
            guard row < values.count, column < values[row].count, let text = values[row][column] else { return nil }
            return PostgresClient.decodeBytea(text)
        }
    }

    let url: String
    let timeoutMs: Int32
    private var connection: OpaquePointer?

    init(url: String, timeoutMs: Int32 = 5000) {
        self.url = url
        self.timeoutMs = timeoutMs
    }

    deinit { disconnect() }

    var isConnected: Bool { connection.map { PQstatus($0) == CONNECTION_OK } ?? false }

    func disconnect() {
        if let connection { PQfinish(connection) }
        connection = nil
    }

    /// Connects if not connected, and sets the session's own bounds: a statement, a lock wait and an idle
    /// transaction end on the server too (a paused agent never holds the ledger's lock for long).
    func connect() throws(LedgerError) {
        if isConnected { return }
        disconnect()
        let seconds = String(max(1, timeoutMs / 1000))
        let keywords = ["dbname", "connect_timeout", "application_name"]
        let values = [url, seconds, "custodian"]
        let made = withCStrings(keywords) { keys in
            withCStrings(values) { vals in PQconnectdbParams(keys, vals, 1) }
        }
        guard let made else { throw .unavailable("out of memory") }
        connection = made
        guard PQstatus(made) == CONNECTION_OK else {
            let why = Self.message(made)
            disconnect()
            throw .unavailable(why)
        }
        guard PQsetnonblocking(made, 1) == 0 else {
            disconnect()
            throw .unavailable("cannot make the connection non-blocking")
        }
        _ = try execute(
            "SET statement_timeout = \(timeoutMs); SET lock_timeout = \(timeoutMs); "
                + "SET idle_in_transaction_session_timeout = \(timeoutMs * 2)")
    }

    /// Runs one statement (several without parameters); the last result's rows. `commit`: the statement ends a
    /// transaction, so a broken connection leaves its outcome in doubt.
    @discardableResult
    func execute(_ sql: String, _ params: [Param] = [], commit: Bool = false) throws(LedgerError) -> Rows {
        let deadline = try send(sql, params, commit: commit)
        return try collect(until: deadline, commit: commit)
    }

    /// Sends a statement without waiting for its result (``collect(until:commit:)`` reads it); returns the deadline.
    func send(_ sql: String, _ params: [Param] = [], commit: Bool = false) throws(LedgerError) -> Int64 {
        guard let connection, PQstatus(connection) == CONNECTION_OK else {
            throw .unavailable("not connected")
        }
        let sent: Int32
        if params.isEmpty {
            sent = PQsendQuery(connection, sql)
        } else {
            var buffers: [[CChar]?] = []
            var lengths: [Int32] = []
            var formats: [Int32] = []
            for param in params {
                switch param {
                case .text(let text):
                    buffers.append(Array(text.utf8CString))
                    lengths.append(0)
                    formats.append(0)
                case .int(let value):
                    buffers.append(Array(String(value).utf8CString))
                    lengths.append(0)
                    formats.append(0)
                case .bytes(let bytes):
                    buffers.append(bytes.map { CChar(bitPattern: $0) })
                    lengths.append(Int32(bytes.count))
                    formats.append(1)
                }
            }
            sent = Self.withPointers(buffers) { pointers in
                PQsendQueryParams(connection, sql, Int32(params.count), nil, pointers, lengths, formats, 0)
            }
        }
        guard sent == 1 else { throw failure(commit: commit, Self.message(connection)) }
        let deadline = Self.nowMs() + Int64(timeoutMs)
        // Flush what libpq could not send at once.
        while true {
            let flushed = PQflush(connection)
            if flushed == 0 { break }
            if flushed < 0 { throw failure(commit: commit, Self.message(connection)) }
            try wait(connection, writable: true, until: deadline, commit: commit)
        }
        return deadline
    }

    /// Reads the results of the statement sent last; the last result's rows.
    @discardableResult
    func collect(until deadline: Int64, commit: Bool = false) throws(LedgerError) -> Rows {
        guard let connection else { throw .unavailable("not connected") }
        var last: Rows?
        var error: String?
        while true {
            while PQisBusy(connection) == 1 {
                try wait(connection, writable: false, until: deadline, commit: commit)
                guard PQconsumeInput(connection) == 1 else { throw failure(commit: commit, Self.message(connection)) }
            }
            guard let result = PQgetResult(connection) else { break }
            defer { PQclear(result) }
            switch PQresultStatus(result) {
            case PGRES_COMMAND_OK, PGRES_TUPLES_OK:
                last = Self.rows(result)
            default:
                if error == nil {
                    error = String(cString: PQresultErrorMessage(result)).trimmingCharacters(
                        in: .whitespacesAndNewlines)
                }
            }
        }
        if let error {
            guard PQstatus(connection) == CONNECTION_OK else { throw failure(commit: commit, error) }
            throw .refused(error)
        }
        guard let last else { throw failure(commit: commit, "no result") }
        return last
    }

    /// The error for a connection that failed: the connection is dropped (the next call reconnects).
    private func failure(commit: Bool, _ why: String) -> LedgerError {
        disconnect()
        return commit ? .inDoubt(why) : .unavailable(why)
    }

    private func wait(_ connection: OpaquePointer, writable: Bool, until deadline: Int64, commit: Bool)
        throws(LedgerError)
    {
        let socket = PQsocket(connection)
        guard socket >= 0 else { throw failure(commit: commit, "the connection has no socket") }
        while true {
            let left = deadline - Self.nowMs()
            guard left > 0 else { throw failure(commit: commit, "no answer within \(timeoutMs) ms") }
            var entry = pollfd(fd: socket, events: Int16(writable ? POLLOUT : POLLIN), revents: 0)
            let ready = poll(&entry, 1, Int32(min(left, Int64(Int32.max))))
            if ready > 0 { return }
            if ready < 0 && errno != EINTR {
                throw failure(commit: commit, "poll: \(String(cString: strerror(errno)))")
            }
        }
    }

    private static func rows(_ result: OpaquePointer) -> Rows {
        let count = Int(PQntuples(result))
        let columns = Int(PQnfields(result))
        var values: [[String?]] = []
        values.reserveCapacity(count)
        for row in 0..<count {
            var line: [String?] = []
            for column in 0..<columns {
                if PQgetisnull(result, Int32(row), Int32(column)) == 1 {
                    line.append(nil)
                } else {
                    line.append(String(cString: PQgetvalue(result, Int32(row), Int32(column))))
                }
            }
            values.append(line)
        }
        let affected = Int(String(cString: PQcmdTuples(result))) ?? 0
        return Rows(values: values, affected: affected)
    }

    static func message(_ connection: OpaquePointer) -> String {
        String(cString: PQerrorMessage(connection)).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The bytes of a bytea value in PostgreSQL's hex output (`\x0a1b…`).
    static func decodeBytea(_ text: String) -> [UInt8]? {
        guard text.hasPrefix("\\x"), !text.dropFirst(2).hasPrefix("0x") else { return nil }
        return Hex.decode(text.dropFirst(2))
    }

    static func nowMs() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec / 1_000_000)
    }

    private static func withPointers<R>(
        _ buffers: [[CChar]?], _ body: ([UnsafePointer<CChar>?]) -> R
    ) -> R {
        var pointers: [UnsafePointer<CChar>?] = []
        func nest(_ index: Int) -> R {
            guard index < buffers.count else { return body(pointers) }
            guard let buffer = buffers[index] else {
                pointers.append(nil)
                return nest(index + 1)
            }
            return buffer.withUnsafeBufferPointer { pointer in
                pointers.append(pointer.baseAddress)
                return nest(index + 1)
            }
        }
        return nest(0)
    }

    /// `strings` as a NULL-terminated array of C strings (libpq's keyword and value lists).
    private func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>?) -> R) -> R {
        Self.withPointers(strings.map { Array($0.utf8CString) }) { pointers in
            (pointers + [nil]).withUnsafeBufferPointer { buffer in body(buffer.baseAddress) }
        }
    }
}
