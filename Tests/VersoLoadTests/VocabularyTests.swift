import Testing
import VersoCore
import VersoServer

@testable import VersoLoad

/// The harness builds its measured requests by concatenation and reads replies with `ReplyScan`;
/// both are checked here against the protocol's one vocabulary (`Request`, `ServerMessage`), so
/// they cannot drift from what the server reads and writes.
@Suite("verso-load speaks the protocol's vocabulary")
struct VocabularyTests {
    @Test("the put, patch and get the harness concatenates parse as the typed requests they stand for")
    func requestsParse() throws {
        let put = try Request.parse(Scenarios.put(key: "load/r/1", base: 3, data: #""p":"xx","t":12"#))
        #expect(
            put.request
                == .write(
                    WriteOperation(
                        key: "load/r/1",
                        action: .put(["p": .string("xx"), "t": .integer(12)]),
                        precondition: .base(3)
                    )
                )
        )
        let patch = try Request.parse(Scenarios.patch(key: "k", base: 0, members: #""f1":2"#, merge: true))
        #expect(
            patch.request
                == .write(
                    WriteOperation(
                        key: "k",
                        action: .patch(["f1": .integer(2)]),
                        precondition: .base(0),
                        merge: .fields
                    )
                )
        )
        let plainPatch = try Request.parse(Scenarios.patch(key: "k", base: 7, members: #""f000001":7"#))
        #expect(
            plainPatch.request
                == .write(WriteOperation(key: "k", action: .patch(["f000001": .integer(7)]), precondition: .base(7)))
        )
        #expect(try Request.parse(Scenarios.get(key: "load/r/2")).request == .get(key: "load/r/2"))
    }

    @Test("ReplyScan reads the type and the integers of every reply the server writes as ServerMessage decodes them")
    func replyScanAgrees() throws {
        let snapshot = RecordSnapshot(key: "load/k", version: 4, data: Array(#"{"n":-2,"p":"x"}"#.utf8))
        let replies: [[UInt8]] = [
            Replies.ack(rid: nil, key: "load/k", version: 5, seq: 9),
            Replies.ack(rid: nil, key: "load/k", version: 5, seq: 9, merged: true),
            Replies.conflict(
                rid: nil,
                ConflictDetail(key: "load/k", base: 1, version: 4, data: snapshot.data, deleted: false)
            ),
            Replies.snapshot(rid: nil, sub: nil, record: snapshot),
            Replies.snapshot(rid: nil, sub: 3, record: snapshot),
            Replies.subscribed(rid: nil, sub: 3, seq: 9, reset: false, snapshots: 1),
            Replies.error(
                rid: nil,
                RequestError(.notFound, "gone"),
                key: "load/k",
                current: RecordState(version: 6, data: nil)
            ),
            EncodedUpdate(Change(seq: 10, key: "load/k", version: 6, data: snapshot.data)).message(sub: 3),
        ]
        for bytes in replies {
            let text = String(decoding: bytes, as: UTF8.self)
            let message = try ServerMessage.decode(text: text).message
            #expect(ReplyScan.type(text).map(String.init) == message.type, "\(text)")
            let (version, seq, sub): (Int64?, Int64?, Int64?) =
                switch message {
                case .ack(_, let version, let seq, _, _): (version, seq, nil)
                case .conflict(let conflict): (conflict.version, nil, nil)
                case .snapshot(let sub, let record): (record.version, nil, sub)
                case .subscribed(let subscribed): (nil, subscribed.seq, subscribed.sub)
                case .error(let error): (error.version, nil, nil)
                case .update(let update): (update.version, update.seq, update.sub)
                default: (nil, nil, nil)
                }
            #expect(ReplyScan.integer("version", in: text) == version, "\(text)")
            #expect(ReplyScan.integer("seq", in: text) == seq, "\(text)")
            #expect(ReplyScan.integer("sub", in: text) == sub, "\(text)")
            #expect(ReplyScan.isSubscriptionMessage(text) == (sub != nil && message.type != "subscribed"), "\(text)")
        }
    }
}
