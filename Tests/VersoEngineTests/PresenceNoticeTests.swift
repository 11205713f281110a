import Testing
import VersoCore
@testable import VersoEngine

@Suite("Presence notices: what one server tells the others sharing its store")
struct PresenceNoticeTests {
    private func notice(_ key: String, state: String?) -> PresenceNotice {
        PresenceNotice(
            server: 7,
            key: key,
            presence: PresenceState(session: "s-1", client: "laptop", user: nil, state: state.map { Array($0.utf8) })
        )
    }

    @Test("a set and a clear read back as they were sent, the state's encoding unchanged")
    func roundTrip() {
        let sent = [notice("notes/\"1\"", state: #"{"field":"title","n":1.50}"#), notice("notes/2", state: nil)]
        let texts = PresenceNotice.broadcasts(sent)
        #expect(texts.count == 1)
        #expect(PresenceNotice.notices(in: texts[0]) == sent)
    }

    @Test(
        "many notices are split into broadcasts small enough for NOTIFY, none lost; text that is not a notice reads as none"
    )
    func chunks() {
        let state = #"{"pad":""# + String(repeating: "x", count: 900) + #""}"#
        let sent = (0..<40).map { notice("notes/\($0)", state: state) }
        let texts = PresenceNotice.broadcasts(sent)
        #expect(texts.count > 1)
        #expect(texts.allSatisfy { $0.utf8.count <= PresenceNotice.maxBroadcastBytes })
        #expect(texts.flatMap { PresenceNotice.notices(in: $0) } == sent)
        #expect(PresenceNotice.notices(in: "not json").isEmpty)
        #expect(PresenceNotice.notices(in: #"[{"w":1}]"#).isEmpty)
    }
}
