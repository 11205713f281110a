import Testing
import VersoCore

/// Decodes what the server's encoder wrote.
private func decoded(_ bytes: [UInt8]) throws -> (rid: JSONValue?, message: ServerMessage) {
    try ServerMessage.decode(text: String(decoding: bytes, as: UTF8.self))
}

@Suite("ServerMessage: every message the server encodes decodes as the same message")
struct ServerMessageTests {
    @Test("welcome, ack, txn ack, error, snapshot, subscribed, unsubscribed and records read back as sent")
    func repliesRoundTrip() throws {
        let rid = JSONValue.integer(7)
        let welcome = try decoded(
            Replies.welcome(rid: rid, session: "s", epoch: "e", seq: 3, allowsForce: true, user: "ann")
        )
        #expect(welcome.rid == rid)
        #expect(
            welcome.message
                == .welcome(
                    Welcome(
                        session: "s",
                        epoch: "e",
                        seq: 3,
                        server: Replies.serverName,
                        allowsForce: true,
                        user: "ann"
                    )
                )
        )
        #expect(
            try decoded(Replies.ack(rid: nil, key: "k", version: 2, seq: 9, merged: true)).message
                == .ack(key: "k", version: 2, seq: 9, merged: true, replayed: false)
        )
        #expect(
            try decoded(Replies.ack(rid: rid, key: "k", version: 2, seq: 9, replayed: true)).message
                == .ack(key: "k", version: 2, seq: 9, merged: false, replayed: true)
        )
        let txn = Replies.txnAck(
            rid: rid,
            seq: 5,
            versions: [KeyVersion(key: "a", version: 1), KeyVersion(key: "b", version: 4, merged: true)],
            replayed: true
        )
        #expect(
            try decoded(txn).message
                == .txnAck(TxnAck(seq: 5, merged: ["b"], replayed: true), versions: ["a": 1, "b": 4])
        )
        let notFound = Replies.error(
            rid: rid,
            RequestError(.notFound, "gone"),
            key: "k",
            current: RecordState(version: 4, data: nil)
        )
        #expect(
            try decoded(notFound).message
                == .error(ServerError(code: "not_found", message: "gone", key: "k", version: 4, deleted: true))
        )
        let snapshot = RecordSnapshot(key: "k", version: 2, data: Array(#"{"x":1}"#.utf8))
        #expect(
            try decoded(Replies.snapshot(rid: rid, sub: nil, record: snapshot)).message
                == .snapshot(sub: nil, Record(key: "k", version: 2, data: ["x": .integer(1)]))
        )
        #expect(
            try decoded(Replies.snapshot(rid: nil, sub: 4, record: snapshot)).message
                == .snapshot(sub: 4, Record(key: "k", version: 2, data: ["x": .integer(1)]))
        )
        #expect(
            try decoded(Replies.subscribed(rid: rid, sub: 4, seq: 10, reset: true, snapshots: 2)).message
                == .subscribed(Subscribed(sub: 4, seq: 10, reset: true, snapshots: 2))
        )
        #expect(try decoded(Replies.unsubscribed(rid: rid, sub: 4)).message == .unsubscribed(sub: 4))
        #expect(
            try decoded(Replies.records(rid: rid, records: [snapshot], next: "k")).message
                == .records([Record(key: "k", version: 2, data: ["x": .integer(1)])], next: "k")
        )
        #expect(try decoded(Replies.records(rid: rid, records: [], next: nil)).message == .records([], next: nil))
    }

    @Test("conflicts (plain, hidden, merge refusals with clashes and changed, a txn's) read back as sent")
    func conflictsRoundTrip() throws {
        var detail = ConflictDetail(
            key: "k",
            base: 1,
            version: 3,
            data: Array(#"{"a":{"b/c":1}}"#.utf8),
            deleted: false
        )
        let current: JSONObject = ["a": .object(["b/c": .integer(1)])]
        #expect(
            try decoded(Replies.conflict(rid: nil, detail)).message
                == .conflict(RecordConflict(key: "k", base: 1, version: 3, data: current, deleted: false))
        )
        detail.changed = [FieldPath(["d~"])]
        #expect(
            try decoded(Replies.conflict(rid: nil, detail)).message
                == .conflict(
                    RecordConflict(
                        key: "k",
                        base: 1,
                        version: 3,
                        data: current,
                        deleted: false,
                        changed: [FieldPath(["d~"])]
                    )
                )
        )
        detail.merge = MergeConflict(reason: .clash, clashes: [FieldPath(["a", "b/c"])])
        detail.changed = [FieldPath(["a", "b/c"]), FieldPath(["d~"])]
        let clash = RecordConflict(
            key: "k",
            base: 1,
            version: 3,
            data: current,
            deleted: false,
            reason: .clash,
            clashes: [FieldPath(["a", "b/c"])],
            changed: [FieldPath(["a", "b/c"]), FieldPath(["d~"])]
        )
        #expect(try decoded(Replies.conflict(rid: nil, detail)).message == .conflict(clash))
        var hidden = ConflictDetail(key: "h", base: 1, version: 2, data: nil, deleted: false)
        hidden.hidden = true
        var hiddenConflict = RecordConflict(key: "h", base: 1, version: 2, data: nil, deleted: false)
        hiddenConflict.hidden = true
        let deleted = ConflictDetail(key: "d", base: 1, version: 2, data: nil, deleted: true)
        #expect(
            try decoded(Replies.txnConflict(rid: .string("r"), [detail, hidden, deleted])).message
                == .txnConflict([
                    clash, hiddenConflict, RecordConflict(key: "d", base: 1, version: 2, data: nil, deleted: true),
                ])
        )
    }

    @Test("a batch's results and an update (a change and a deletion) read back as sent")
    func resultsAndUpdates() throws {
        let results = Replies.results(
            rid: nil,
            [
                Replies.ack(rid: nil, key: "a", version: 1, seq: 2),
                Replies.conflict(rid: nil, ConflictDetail(key: "b", base: 2, version: 1, data: nil, deleted: true)),
                Replies.error(rid: nil, RequestError(.notFound, "no c"), key: "c"),
            ],
            replayed: true
        )
        #expect(
            try decoded(results).message
                == .results(
                    [
                        .ack(key: "a", version: 1, seq: 2, merged: false, replayed: false),
                        .conflict(RecordConflict(key: "b", base: 2, version: 1, data: nil, deleted: true)),
                        .error(ServerError(code: "not_found", message: "no c", key: "c")),
                    ],
                    replayed: true
                )
        )
        let change = EncodedUpdate(Change(seq: 8, key: "k", version: 3, data: Array(#"{"x":[1]}"#.utf8)))
        #expect(
            try decoded(change.message(sub: 12)).message
                == .update(Update(sub: 12, key: "k", version: 3, seq: 8, data: ["x": .array([.integer(1)])]))
        )
        let deletion = EncodedUpdate(Change(seq: 9, key: "k", version: 4, data: nil))
        #expect(
            try decoded(deletion.message(sub: 12)).message
                == .update(Update(sub: 12, key: "k", version: 4, seq: 9, data: nil))
        )
    }

    @Test("at and by on updates and conflicts, a history page and presence (echo and fan-out) read back as sent")
    func historyAndPresence() throws {
        let stamped = EncodedUpdate(
            Change(seq: 8, key: "k", version: 3, data: Array("{}".utf8), at: 1_764_790_000_123, by: "ann")
        )
        #expect(
            try decoded(stamped.message(sub: 2)).message
                == .update(Update(sub: 2, key: "k", version: 3, seq: 8, data: [:], at: 1_764_790_000_123, by: "ann"))
        )
        var detail = ConflictDetail(key: "k", base: 1, version: 3, data: Array("{}".utf8), deleted: false)
        detail.at = 5
        detail.by = "bob"
        var conflict = RecordConflict(key: "k", base: 1, version: 3, data: [:], deleted: false)
        conflict.at = 5
        conflict.by = "bob"
        #expect(try decoded(Replies.conflict(rid: nil, detail)).message == .conflict(conflict))

        let page = StoredHistory(
            versions: [
                StoredVersion(version: 4, seq: 20, at: 9, by: "ann", data: Array(#"{"a":1}"#.utf8)),
                StoredVersion(version: 3, seq: 12, at: nil, by: nil, data: nil),
            ],
            next: nil,
            gone: 2
        )
        let history = try decoded(Replies.history(rid: .string("h"), key: "k", page))
        #expect(history.rid == .string("h"))
        #expect(
            history.message
                == .history(
                    RecordHistory(
                        key: "k",
                        versions: [
                            RecordVersion(version: 4, seq: 20, at: 9, by: "ann", data: ["a": .integer(1)]),
                            RecordVersion(version: 3, seq: 12, data: nil),
                        ],
                        next: nil,
                        gone: 2
                    )
                )
        )
        let more = StoredHistory(
            versions: [StoredVersion(version: 9, seq: 30, at: 1, by: nil, data: Array("{}".utf8))],
            next: 9,
            gone: nil
        )
        let partial = try decoded(Replies.history(rid: nil, key: "k", more)).message
        guard case .history(let decodedPage) = partial else {
            Issue.record("not a history: \(partial)")
            return
        }
        #expect(decodedPage.next == 9 && decodedPage.gone == nil)

        let state = PresenceState(session: "s1", client: "laptop", user: "ann", state: Array(#"{"f":"title"}"#.utf8))
        #expect(
            try decoded(Replies.presence(rid: .integer(3), key: "k", state)).message
                == .presence(
                    Presence(
                        sub: nil,
                        key: "k",
                        session: "s1",
                        client: "laptop",
                        user: "ann",
                        state: ["f": .string("title")]
                    )
                )
        )
        let left = PresenceState(session: "s1", client: nil, user: nil, state: nil)
        #expect(
            try decoded(EncodedUpdate(presenceOf: "k", left).message(sub: 4)).message
                == .presence(Presence(sub: 4, key: "k", session: "s1", state: nil))
        )
    }

    @Test(
        "a message that breaks Protocol.md is refused with what is wrong: missing or mistyped members, merge members without a reason, an unknown type"
    )
    func strict() throws {
        let plain: JSONObject = [
            "type": .string("conflict"), "key": .string("k"), "base": .integer(1), "version": .integer(2),
            "data": .object([:]), "deleted": .bool(false),
        ]
        #expect(throws: Never.self) { try ServerMessage.decode(.object(plain)) }
        var clash = plain
        clash["reason"] = .string("clash")
        clash["clashes"] = .array([.string("/a~1b/c~0")])
        clash["changed"] = .array([.string("/a~1b/c~0"), .string("/d")])
        guard case .conflict(let parsed) = try ServerMessage.decode(.object(clash)) else {
            Issue.record("expected a conflict")
            return
        }
        #expect(parsed.clashes == [FieldPath(["a/b", "c~"])])
        #expect(parsed.changed == [FieldPath(["a/b", "c~"]), FieldPath(["d"])])
        var cases: [(String, JSONObject)] = []
        for (member, value) in [
            ("reason", JSONValue.string("because")), ("reason", .integer(1)), ("clashes", .string("/a")),
            ("clashes", .array([.string("a")])), ("clashes", .array([.string("/a~2")])), ("changed", .null),
            ("reason", nil), ("clashes", nil), ("deleted", .string("no")), ("data", .integer(1)), ("base", nil),
            ("hidden", .string("yes")),
        ] as [(String, JSONValue?)] {
            var bad = clash
            bad[BytewiseString(member)] = value
            cases.append(("\(member): \(value?.encodedString ?? "absent")", bad))
        }
        var noReason = plain
        noReason["clashes"] = .array([])
        cases.append(("clashes without a reason", noReason))
        var plainChanged = plain
        plainChanged["changed"] = .array([.string("/x")])
        #expect(
            try ServerMessage.decode(.object(plainChanged))
                == .conflict(
                    RecordConflict(
                        key: "k",
                        base: 1,
                        version: 2,
                        data: [:],
                        deleted: false,
                        changed: [FieldPath(["x"])]
                    )
                )
        )
        cases.append(("no type", ["key": .string("k")]))
        cases.append(("unknown type", ["type": .string("gossip")]))
        cases.append(("ack without seq", ["type": .string("ack"), "key": .string("k"), "version": .integer(1)]))
        cases.append(
            (
                "update with data and deleted",
                [
                    "type": .string("update"), "sub": .integer(1), "key": .string("k"), "version": .integer(1),
                    "seq": .integer(1), "data": .object([:]), "deleted": .bool(true),
                ]
            )
        )
        cases.append(
            (
                "results holding a welcome",
                [
                    "type": .string("results"),
                    "results": .array([
                        .object([
                            "type": .string("welcome"), "session": .string("s"), "epoch": .string("e"),
                            "seq": .integer(0), "server": .string("v"), "force": .bool(false),
                        ])
                    ]),
                ]
            )
        )
        for (what, message) in cases {
            #expect(throws: MalformedServerMessage.self, "\(what)") { try ServerMessage.decode(.object(message)) }
        }
        #expect(throws: MalformedServerMessage.self) { try ServerMessage.decode(text: "{\"type\":") }
    }

    @Test("members a newer server adds are ignored; an error code this library does not know is kept as sent")
    func forwardCompatible() throws {
        let ack = try ServerMessage.decode(
            text: #"{"type":"ack","key":"k","version":1,"seq":1,"by":"ann","at":1700000000000}"#
        )
        #expect(ack.message == .ack(key: "k", version: 1, seq: 1, merged: false, replayed: false))
        guard
            case .error(let error) = try ServerMessage.decode(text: #"{"type":"error","code":"new","message":"m"}"#)
                .message
        else {
            Issue.record("expected an error")
            return
        }
        #expect(error.code == "new" && error.errorCode == nil)
    }
}
