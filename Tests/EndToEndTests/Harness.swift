import CustodianTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Runs the built `custodian` binary and the Python oracle for black-box tests.
enum Harness {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// The binary under test: $CUSTODIAN_BIN, else `custodian` beside the test bundle, else .build/debug.
    static func binary() throws -> String {
        let environment = ProcessInfo.processInfo.environment
        var candidates: [String] = []
        if let path = environment["CUSTODIAN_BIN"] { candidates.append(path) }
        let runner = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        candidates.append(runner.appendingPathComponent("custodian").path)
        candidates.append(runner.deletingLastPathComponent().appendingPathComponent("custodian").path)
        candidates.append(repository.appendingPathComponent(".build/debug/custodian").path)
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw HarnessError("no custodian binary (build it first: swift build); looked at \(candidates)")
        }
        return found
    }

    /// The Python with eth-keys and eth-account: $CUSTODIAN_PYTHON, else .venv/bin/python3 (scripts/test makes it).
    static func python() throws -> String {
        let path =
            ProcessInfo.processInfo.environment["CUSTODIAN_PYTHON"]
            ?? repository.appendingPathComponent(".venv/bin/python3").path
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw HarnessError("no Python oracle at \(path): run scripts/test, which installs eth-keys and eth-account")
        }
        return path
    }

    typealias Output = ProcessOutput

    /// Runs a program to completion.
    static func run(_ executable: String, _ arguments: [String], stdin: Data? = nil) throws -> Output {
        try ProcessRunner.run(executable, arguments, stdin: stdin)
    }

    static func custodian(_ arguments: [String], stdin: Data? = nil) throws -> Output {
        try run(try binary(), arguments, stdin: stdin)
    }

    /// The address that signed keccak256(`bytes`), recovered by eth-keys.
    static func recover(bytes: [UInt8], signature: String, in directory: String) throws -> String {
        let path = directory + "/recover-\(UUID().uuidString)"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let script = repository.appendingPathComponent("Tests/EndToEndTests/oracle.py").path
        let output = try run(try python(), [script, "recover", path, signature])
        guard output.status == 0 else { throw HarnessError("oracle failed: \(output.stderr)") }
        return output.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The address of an EIP-191 checkpoint signature over `head`, recovered by eth-account.
    static func recoverCheckpoint(head: String, signature: String) throws -> String {
        try oracle(["checkpoint", head, signature])
    }

    /// The address eth-account recovers from an EIP-191 signature over `text` (a labelled checkpoint).
    static func recoverCheckpoint(text: String, signature: String) throws -> String {
        try oracle(["checkpoint-text", text, signature])
    }

    /// The address eth-keys recovers from a v1 quorum signature over the state hash `hash` (`0x` + 64 hex).
    static func recoverV1(hash: String, quorumSig: String) throws -> String {
        try oracle(["v1", hash, quorumSig])
    }

    static func oracle(_ arguments: [String]) throws -> String {
        let script = repository.appendingPathComponent("Tests/EndToEndTests/oracle.py").path
        let output = try run(try python(), [script] + arguments)
        guard output.status == 0 else { throw HarnessError("oracle failed: \(output.stderr)") }
        return output.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A private temporary directory (mode 0700), removed at the end.
final class Workspace {
    let path: String

    init() throws {
        // Short, so that socket paths stay under the 108-byte limit.
        var template = Array("/tmp/cust-XXXXXX".utf8CString)
        guard let created = mkdtemp(&template) else { throw HarnessError("mkdtemp failed") }
        path = String(cString: created)
    }

    /// `CUSTODIAN_KEEP_WORKSPACE=1` keeps every workspace (to look at a failure's state directory).
    deinit {
        if ProcessInfo.processInfo.environment["CUSTODIAN_KEEP_WORKSPACE"] == nil {
            try? FileManager.default.removeItem(atPath: path)
        }
    }

    func write(_ name: String, _ text: String, mode: Int = 0o600) throws -> String {
        let file = path + "/" + name
        try Data(text.utf8).write(to: URL(fileURLWithPath: file))
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: file)
        return file
    }
}

/// A `custodian serve` running in the background.
final class RunningAgent {
    let process = Process()
    let socket: String
    let logFile: String

    /// Starts `custodian serve`; `launcher` (such as setpriv and its flags) runs it as another user, with
    /// `binary` (a copy that user can execute) in place of the built one.
    init(
        arguments: [String], socket: String, logFile: String, launcher: [String] = [], binary: String? = nil
    ) throws {
        self.socket = socket
        self.logFile = logFile
        _ = FileManager.default.createFile(atPath: logFile, contents: nil)
        let custodian = try binary ?? Harness.binary()
        if let program = launcher.first {
            process.executableURL = URL(fileURLWithPath: program)
            process.arguments = Array(launcher.dropFirst()) + [custodian, "serve", "--socket", socket] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: custodian)
            process.arguments = ["serve", "--socket", socket] + arguments
        }
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: logFile))
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if !process.isRunning { throw HarnessError("the agent exited: \(log)") }
            if (try? Harness.custodian(["status", "--socket", socket]))?.status == 0 { return }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw HarnessError("the agent did not answer within 20 s: \(log)")
    }

    var log: String { (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? "" }

    /// SIGTERM, then the exit status.
    func stop() -> Int32 {
        process.terminate()
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }
}

/// A raw client connection to a Unix socket, for tests of the transport itself.
final class RawConnection: @unchecked Sendable {
    let fd: Int32

    init(_ path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard result == 0 else {
            close(fd)
            throw HarnessError("connect \(path): \(String(cString: strerror(errno)))")
        }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// Sends all of `bytes`; false if the peer closed the connection.
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        var sent = 0
        while sent < bytes.count {
            let count = bytes.withUnsafeBytes { buffer -> Int in
                guard let base = buffer.baseAddress else { return 0 }
                return Glibc.send(fd, base + sent, bytes.count - sent, Int32(MSG_NOSIGNAL))
            }
            if count <= 0 { return false }
            sent += count
        }
        return true
    }

    /// Everything until the peer closes (or the 10 s timeout).
    func readToEnd() -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count <= 0 { return out }
            out += chunk[0..<count]
        }
    }

    /// One line (without its newline), or nil at the end of the stream.
    func readLine() -> String? {
        var out: [UInt8] = []
        var byte: UInt8 = 0
        while recv(fd, &byte, 1, 0) == 1 {
            if byte == 0x0A { return String(decoding: out, as: UTF8.self) }
            out.append(byte)
        }
        return out.isEmpty ? nil : String(decoding: out, as: UTF8.self)
    }
}
