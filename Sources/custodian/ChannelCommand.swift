import ArgumentParser
import CustodianClient
import Foundation

/// v1 home channels (PROTOCOL-v1-channels): hand the agent the node's answers, and resume a channel whose signing
/// stopped.
struct ChannelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "channel", abstract: "v1 home channels: observe the node's answers; resume a stopped channel.",
        subcommands: [Observe.self, Resume.self, Challenge.self])

    struct Observe: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Hand the agent nitronode's answer to channels.v1.get_latest_state (the frame's text): its own "
                + "last state co-signed, or a state the node issued (a receive, a release) as the channel's new base. "
                + "Prints the channel and the version taken; exit 2 when refused.")

        @Option(help: "The agent's socket.") var socket: String
        @Option(help: "The answer's frame file (default: standard input).") var file: String?

        func run() throws {
            let message = try CLI.readInput(file)
            do {
                let taken = try CustodianClient(socketPath: socket).observe(message: message)
                print("\(taken.channel) version \(taken.version)")
            } catch {
                throw clientFailure(error)
            }
        }
    }

    struct Resume: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Resume signing on a channel the agent stopped (the node signed a state it could not take as "
                + "a base). For the agent's own user or root; recorded in the audit log.")

        @Option(help: "The agent's socket.") var socket: String
        @Argument(help: "The home channel id (0x + 64 hex).") var channel: String

        func run() throws {
            do { try CustodianClient(socketPath: socket).resumeChannel(channel) } catch { throw clientFailure(error) }
            print("resumed \(channel)")
        }
    }

    struct Challenge: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Sign a challenge of the channel's latest state the node co-signed (PROTOCOL-v1-channels §3.2): "
                + "prints the version and the challenger signature (0x00 + 65 bytes) for ChannelHub's "
                + "challengeChannel. For the agent's own user or root; recorded in the audit log.")

        @Option(help: "The agent's socket.") var socket: String
        @Argument(help: "The home channel id (0x + 64 hex).") var channel: String

        func run() throws {
            do {
                let challenge = try CustodianClient(socketPath: socket).challengeChannel(channel)
                print("version \(challenge.version) \(challenge.challengerSig)")
            } catch {
                throw clientFailure(error)
            }
        }
    }
}
