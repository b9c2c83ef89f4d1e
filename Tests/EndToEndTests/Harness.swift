import Foundation
import Testing

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

    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs a program to completion.
    static func run(_ executable: String, _ arguments: [String], stdin: Data? = nil) throws -> Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        let input = Pipe()
        process.standardInput = input
        try process.run()
        if let stdin { input.fileHandleForWriting.write(stdin) }
        try input.fileHandleForWriting.close()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Output(
            status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
            stderr: String(decoding: stderr, as: UTF8.self))
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
        let script = repository.appendingPathComponent("Tests/EndToEndTests/oracle.py").path
        let output = try run(try python(), [script, "checkpoint", head, signature])
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

    deinit { try? FileManager.default.removeItem(atPath: path) }

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

    init(arguments: [String], socket: String, logFile: String) throws {
        self.socket = socket
        self.logFile = logFile
        _ = FileManager.default.createFile(atPath: logFile, contents: nil)
        process.executableURL = URL(fileURLWithPath: try Harness.binary())
        process.arguments = ["serve", "--socket", socket] + arguments
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
