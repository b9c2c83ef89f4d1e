import ArgumentParser
import CustodianAgent
import CustodianCrypto
import Foundation

struct DevCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev",
        abstract: "Run an agent on a dev key and the default policy, creating both on first run.",
        discussion: """
            In DIR: key.sealed (a new key), passphrase (a random passphrase, mode 0600), policy.toml (the built-in \
            default policy), state/ (the audit log) and custodian.sock. For development only: the passphrase sits \
            beside the key.
            """)

    @Option(help: "The dev directory.") var dir: String = ".custodian-dev"

    func run() throws {
        let directory = dir.hasSuffix("/") ? String(dir.dropLast()) : dir
        do { try FileIO.ensurePrivateDirectory(directory) } catch { throw CLIFailure("\(error)") }
        let keyFile = directory + "/key.sealed"
        let passphraseFile = directory + "/passphrase"
        let policyFile = directory + "/policy.toml"
        if !FileIO.exists(keyFile) {
            do {
                let passphrase = try SecretFile.randomPassphrase()
                let bytes = passphrase.withUnsafeBytes { Array($0) }
                try FileIO.createPrivateFile(passphraseFile, bytes + [0x0A])
                let key = try SigningKey.generate()
                let sealed = try KeyFile.seal(key, passphrase: passphrase, cost: .interactive)
                try SecretFile.writeAtomically(sealed, to: keyFile, replace: false)
                CLI.info("created the dev key \(key.address) in \(keyFile)")
            } catch {
                throw CLIFailure("cannot create the dev key: \(error)")
            }
        }
        if !FileIO.exists(policyFile) {
            do { try FileIO.createPrivateFile(policyFile, Array(DefaultPolicy.text.utf8)) } catch {
                throw CLIFailure("\(error)")
            }
            CLI.info("wrote the default policy to \(policyFile)")
        }
        let socket = directory + "/custodian.sock"
        CLI.info("try: custodian sign --socket \(socket) --file MESSAGE   (or: custodian status --socket \(socket))")
        try Serving.run(
            AgentSettings(
                server: ServerSettings(socketPath: socket), keyFile: keyFile, policyFile: policyFile,
                stateDirectory: directory + "/state", passphraseFile: passphraseFile))
    }
}
