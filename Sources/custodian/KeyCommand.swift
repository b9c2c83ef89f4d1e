import ArgumentParser
import CustodianAgent
import CustodianCore
import CustodianCrypto

struct KeyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "key", abstract: "Create, import and inspect sealed key files.",
        subcommands: [New.self, Import.self, AddressCommand.self])

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
            abstract: "Seal an existing private key (64 hex digits, optional 0x) to a key file; print its address.")

        @Option(help: "The key file to create (mode 0600; never overwritten).") var keyFile: String
        @Option(help: "A file holding the private key as 64 hex digits.") var privateKeyFile: String
        @Option(help: "A file holding the passphrase.") var passphraseFile: String?
        @Option(help: "Argon2id cost: interactive, moderate or sensitive.") var kdf: String = "moderate"

        func run() throws {
            let cost = try kdfCost(kdf)
            do {
                let key = try SecretFile.readPrivateKey(privateKeyFile)
                let passphrase = try CLI.passphrase(file: passphraseFile, prompt: "New passphrase: ", confirm: true)
                let sealed = try KeyFile.seal(key, passphrase: passphrase, cost: cost)
                try SecretFile.writeAtomically(sealed, to: keyFile, replace: false)
                print(key.address.checksummed)
            } catch let error as KeyFileError {
                throw CLIFailure("\(error)", exitCode: error == .invalidPrivateKey ? 2 : 1)
            }
        }
    }

    struct AddressCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "address", abstract: "Print a key file's address without the passphrase.")

        @Option(help: "The key file.") var keyFile: String

        func run() throws {
            do {
                let bytes = try FileIO.readAll(keyFile, limit: 4096)
                print(try KeyFile.header(bytes).address.checksummed)
            } catch let error as KeyFileError {
                throw CLIFailure("\(keyFile): \(error)", exitCode: 2)
            } catch {
                throw CLIFailure("\(error)")
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
