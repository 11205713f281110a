import Testing
import VersoCore

@Suite("Update messages encoded once per change")
struct EncodedUpdateTests {
    @Test(
        "byteCount is the length of the message each subscription id gets, without building it",
        arguments: [
            Int64(0), 7, 9, 10, 99, 100, 12_345, 999_999_999, 1_000_000_000, Int64.max, -1, Int64.min,
        ]
    )
    func byteCount(sub: Int64) throws {
        for change in [
            Change(seq: 12, key: "a/é", version: 3, data: Array(#"{"x":1}"#.utf8)),
            Change(seq: 13, key: "a", version: 4, data: nil),
        ] {
            let update = EncodedUpdate(change)
            let message = update.message(sub: sub)
            #expect(update.byteCount(sub: sub) == message.count)
            let parsed = try JSONParser.parse(String(decoding: message, as: UTF8.self))
            #expect(parsed["sub"] == .number(String(sub)))
            #expect(parsed["deleted"] == .bool(change.data == nil))
        }
    }
}
