import ArgumentParser
import CustodianAgent
import CustodianCore
import CustodianCrypto

struct KeyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "key", abstract: "Create, import and inspect sealed key files.",
        subcommands: [New.self, Import.self, AddressCommand.self, Passwd.self])

    struct New: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Generate a secp256k1 key in locked memory, seal it to a key file, print its address.")

        @Option(help: "The key file to create (mode 0600; never overwritten).") var keyFile: String
        @Option(help: "A file holding the passphrase.") var passphraseFile: String?
        @Option(help: "Argon2id cost: interactive, moderate or sensitive.") var kdf: String = "moderate"

        func run() throws {
            let cost = try kdfCost(kdf)
            let passphrase = try CLI.passphrase(file: passphraseFile, prompt: "New passphrase: ", confirm: true)
            do {
                let key = try SigningKey.generate()
                let sealed = try KeyFile.seal(key, passphrase: passphrase, cost: cost)
                try SecretFile.writeAtomically(sealed, to: keyFile, replace: false)
                print(key.address.checksummed)
            } catch let error as KeyFileError {
                throw CLIFailure("\(error)")
            }
        }
    }

    struct Import: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Seal an existing key to a key file and print its address: a private key file (64 hex digits, "
                + "optional 0x) or an Ethereum V3 keystore (scrypt or pbkdf2, aes-128-ctr).")

        @Option(help: "The key file to create (mode 0600; never overwritten).") var keyFile: String
        @Option(help: "A file holding the private key as 64 hex digits.") var privateKeyFile: String?
        @Option(help: "An Ethereum V3 keystore (JSON).") var keystore: String?
        @Option(help: "A file holding the keystore's password.") var keystorePassphraseFile: String?
        @Option(help: "A file holding the new key file's passphrase.") var passphraseFile: String?
        @Option(help: "Argon2id cost: interactive, moderate or sensitive.") var kdf: String = "moderate"

        func validate() throws {
            guard (privateKeyFile == nil) != (keystore == nil) else {
                throw ValidationError("give exactly one of --private-key-file and --keystore")
            }
        }

        func run() throws {
            let cost = try kdfCost(kdf)
            let key: SigningKey
            if let keystore {
                let bytes: [UInt8]
                do { bytes = try FileIO.readAll(keystore, limit: 1 << 16) } catch { throw CLIFailure("\(error)") }
                let password: SecureBytes
                do {
                    if let path = keystorePassphraseFile {
                        password = try SecretFile.read(path)
                    } else {
                        password = try SecretFile.readFromTerminal(prompt: "Keystore password: ")
                    }
                } catch { throw CLIFailure("keystore password: \(error)") }
                do { key = try Keystore.open(bytes, password: password) } catch {
                    throw CLIFailure("\(keystore): \(error)", exitCode: 2)
                }
            } else {
                do { key = try SecretFile.readPrivateKey(privateKeyFile ?? "") } catch {
                    throw CLIFailure("\(error)", exitCode: error == .invalidPrivateKey ? 2 : 1)
                }
            }
            let passphrase = try CLI.passphrase(file: passphraseFile, prompt: "New passphrase: ", confirm: true)
            do {
                let sealed = try KeyFile.seal(key, passphrase: passphrase, cost: cost)
                try SecretFile.writeAtomically(sealed, to: keyFile, replace: false)
                print(key.address.checksummed)
            } catch {
                throw CLIFailure("\(error)")
            }
        }
    }

    struct Passwd: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-seal a key file under a new passphrase, atomically (the old file stays until the new one "
                + "is complete and synced).")

        @Option(help: "The key file.") var keyFile: String
        @Option(help: "A file holding the current passphrase.") var passphraseFile: String?
        @Option(help: "A file holding the new passphrase.") var newPassphraseFile: String?

        func run() throws {
            let bytes: [UInt8]
            do { bytes = try SecretFile.readKeyFile(keyFile) } catch { throw CLIFailure("\(error)") }
            let current = try CLI.passphrase(file: passphraseFile, prompt: "Current passphrase: ")
            do {
                let header = try KeyFile.header(bytes)
                let key = try KeyFile.open(bytes, passphrase: current)
                let next: SecureBytes
                if let newPassphraseFile {
                    next = try SecretFile.read(newPassphraseFile)
                } else {
                    let first = try SecretFile.readFromTerminal(prompt: "New passphrase: ")
                    let second = try SecretFile.readFromTerminal(prompt: "Repeat the new passphrase: ")
                    guard SecretFile.equal(first, second) else { throw CLIFailure("the two passphrases differ") }
                    next = first
                }
                // The same Argon2id cost as before, a fresh salt and nonce; rename() over the old file.
                let sealed = try KeyFile.seal(
                    key, passphrase: next, opsLimit: header.opsLimit, memLimit: header.memLimit)
                try SecretFile.writeAtomically(sealed, to: keyFile, replace: true)
                print(key.address.checksummed)
            } catch let error as KeyFileError {
                throw CLIFailure("\(keyFile): \(error)", exitCode: error == .wrongPassphrase ? 2 : 1)
            }
        }
    }

    struct AddressCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "address", abstract: "Print a key file's address without the passphrase.")

        @Option(help: "The key file.") var keyFile: String

        func run() throws {
            do {
                let bytes = try SecretFile.readKeyFile(keyFile)
                print(try KeyFile.header(bytes).address.checksummed)
            } catch {
                throw CLIFailure("\(keyFile): \(error)", exitCode: 2)
            }
        }
    }
}

func kdfCost(_ name: String) throws(CLIFailure) -> KDFCost {
    guard let cost = KDFCost(rawValue: name) else {
        throw CLIFailure("unknown --kdf \(name)", hint: "interactive, moderate (default) or sensitive")
    }
    return cost
}
