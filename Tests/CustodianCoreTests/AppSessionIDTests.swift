import CustodianCore
import CustodianTestSupport
import Foundation
import Testing

@Suite("app_session_id against vectors/app_session_id (checked against Go's encoding/json)")
struct AppSessionIDTests {
    @Test("the folder holds the 9 cases") func folderIsComplete() {
        #expect(VectorFiles.names("app_session_id").count == 9)
    }

    /// The definition read from the client's text the way the agent reads it: inside a create request.
    static func readDefinition(_ text: String) -> Result<AppDefinition, Denial> {
        let message = "[1,\"create_app_session\",{\"definition\":\(text),\"allocations\":[]},1]"
        return NitroRPCv0Reader().read(Array(message.utf8)).map { request in
            guard case .create(let definition, _, _) = request.body else { preconditionFailure("not a create") }
            return definition
        }
    }

    @Test(arguments: VectorFiles.names("app_session_id"))
    func identifier(_ name: String) throws {
        let vector = try VectorFiles.load("app_session_id", name)
        let text = try #require(vector["definition_text"] as? String)
        let goJSON = try #require(vector["go_json"] as? String)
        let expected = try #require(vector["app_session_id"] as? String)
        // The oracle: the id is keccak256 of Go's bytes.
        #expect(Hex.encode(Keccak256.hash(Array(goJSON.utf8)), prefixed: true) == expected)
        switch Self.readDefinition(text) {
        case .success(let definition):
            #expect(String(decoding: definition.goJSON, as: UTF8.self) == goJSON)
            #expect(definition.appSessionID == expected)
        case .failure(let denial):
            // Only a participant not in EIP-55 form is refused (it would never match a signer at ClearNode).
            #expect(name == "participant_case_matters.json")
            #expect(denial.reason == .payloadBadAddress)
            let fixed = text.replacingOccurrences(
                of: "0xfdec8f58fa4b3bf07dd11eaf4c562ee674e2c638", with: "0xFdEc8F58fA4b3bf07DD11eAF4c562Ee674e2C638")
            let definition = try Self.readDefinition(fixed).get()
            #expect(definition.appSessionID != expected)
        }
    }
}
