import CustodianAgent
import CustodianCrypto
import Foundation

/// A failure the CLI reports as `custodian: error: …` (and a hint line) before exiting with its code.
struct CLIFailure: Error {
    var message: String
    var hint: String?
    var exitCode: Int32

    init(_ message: String, hint: String? = nil, exitCode: Int32 = 1) {
        self.message = message
        self.hint = hint
        self.exitCode = exitCode
    }
}

extension CLIFailure {
    /// The same failure, as the CLI reports it.
    init(_ error: AgentStartError) {
        self.init(error.description, hint: error.hint, exitCode: error.exitCode)
    }
}

enum CLI {
    static func report(_ failure: CLIFailure) -> Never {
        var text = "custodian: error: \(failure.message)\n"
        if let hint = failure.hint { text += "custodian: hint: \(hint)\n" }
        FileHandle.standardError.write(Data(text.utf8))
        exit(failure.exitCode)
    }

    static func info(_ line: String) {
        FileHandle.standardError.write(Data("custodian: \(line)\n".utf8))
    }

    /// The passphrase, from (in order) the flag's file, `CUSTODIAN_PASSPHRASE_FILE`, systemd's credentials
    /// directory, then the terminal with echo off. Never from a command-line value.
    static func passphrase(file: String?, prompt: String, confirm: Bool = false) throws(CLIFailure) -> SecureBytes {
        let environment = ProcessInfo.processInfo.environment
        var path = file ?? environment["CUSTODIAN_PASSPHRASE_FILE"]
        if path == nil, let credentials = environment["CREDENTIALS_DIRECTORY"] {
            let candidate = credentials + "/custodian-passphrase"
            if FileManager.default.fileExists(atPath: candidate) { path = candidate }
        }
        do {
            if let path { return try SecretFile.read(path) }
            let first = try SecretFile.readFromTerminal(prompt: prompt)
            if confirm {
                let second = try SecretFile.readFromTerminal(prompt: "Repeat the passphrase: ")
                guard SecretFile.equal(first, second) else { throw CLIFailure("the two passphrases differ") }
            }
            return first
        } catch let error as KeyFileError {
            throw CLIFailure("passphrase: \(error)", hint: "give --passphrase-file FILE (a 0600 file)")
        } catch let failure as CLIFailure {
            throw failure
        } catch {
            throw CLIFailure("passphrase: \(error)")
        }
    }

    /// The bytes of a file, or standard input for nil or "-".
    static func readInput(_ path: String?) throws(CLIFailure) -> [UInt8] {
        if let path, path != "-" {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw CLIFailure("cannot read \(path)")
            }
            return Array(data)
        }
        return Array(FileHandle.standardInput.readDataToEndOfFile())
    }

    /// Prints one line to standard output.
    static func out(_ bytes: [UInt8]) {
        FileHandle.standardOutput.write(Data(bytes + [0x0A]))
    }
}
