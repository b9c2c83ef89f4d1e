import Foundation

/// What a program printed and how it exited.
public struct ProcessOutput: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

/// Runs programs to completion for the tests (the built custodian, Python's oracle, Chromium).
public enum ProcessRunner {
    /// Runs `executable` with `arguments`, feeding `stdin`; stdout and stderr are drained at once (stderr on a second
    /// thread), so a program that fills one pipe while the other is read cannot stall.
    public static func run(_ executable: String, _ arguments: [String], stdin: Data? = nil) throws -> ProcessOutput {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let out = Pipe()
        let err = Pipe()
        let input = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input
        try process.run()
        final class Box: @unchecked Sendable { var data = Data() }
        let stderr = Box()
        let drained = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            stderr.data = err.fileHandleForReading.readDataToEndOfFile()
            drained.signal()
        }
        if let stdin { input.fileHandleForWriting.write(stdin) }
        try input.fileHandleForWriting.close()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        drained.wait()
        process.waitUntilExit()
        return ProcessOutput(
            status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
            stderr: String(decoding: stderr.data, as: UTF8.self))
    }
}
