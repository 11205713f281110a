import Testing
import VersoCore

@Suite("Request encoding: every request a client builds reads back as the server parses it")
struct RequestEncodingTests {
    static let data: JSONObject = [
        "title": .string("é \"quoted\" \n"), "n": .number("1.5e3"), "tags": .array([.string("a"), .null]),
        "meta": .object(["deep": .object(["x": .bool(true)])]),
    ]

    static let operations: [WriteOperation] = [
        WriteOperation(key: "notes/1", action: .put(data), precondition: .base(0)),
        WriteOperation(key: "notes/2", action: .patch(["title": .null]), precondition: .base(7), merge: .fields),
        WriteOperation(key: "notes/3", action: .put([:]), precondition: .force),
        WriteOperation(key: "notes/4", action: .delete, precondition: .base(2)),
        WriteOperation(key: "notes/5", action: .patch(data), precondition: .force),
    ]

    static let requests: [Request] =
        [
            .hello(client: nil, token: nil), .hello(client: "laptop", token: "t-0123456789"), .get(key: "notes/é"),
            .subscribe(.prefix(""), since: nil, epoch: nil), .subscribe(.prefix("notes/"), since: 42, epoch: "e"),
            .subscribe(.keys([BytewiseString("a"), BytewiseString("b")]), since: 0, epoch: nil),
            .unsubscribe(sub: 3), .list(prefix: "", after: nil, limit: 100),
            .list(prefix: "n/", after: "n/5", limit: 1000),
            .history(key: "k", before: nil, limit: 20), .history(key: "k", before: 7, limit: 100),
            .presence(key: "k", state: ["field": .string("title")]), .presence(key: "k", state: nil),
            .txn(operations + [WriteOperation(key: "notes/6", action: .check, precondition: .base(1))]),
            .batch(operations + operations),
        ] + operations.map { .write($0) }

    @Test("each request, with and without rid and idempotency key, parses back to itself")
    func roundTrip() throws {
        for request in Self.requests {
            for rid: JSONValue? in [nil, .string("r-1"), .integer(12)] {
                let isWrite =
                    switch request {
                    case .write, .txn, .batch: true
                    default: false
                    }
                for key: String? in isWrite ? [nil, "a-key"] : [nil] {
                    let text = request.encoded(rid: rid, idempotencyKey: key)
                    let envelope = try Request.parse(text)
                    #expect(envelope == RequestEnvelope(rid: rid, request: request, idempotencyKey: key), "\(text)")
                }
            }
        }
    }

    @Test("the message names its members as Protocol.md does")
    func members() {
        let put = Request.write(Self.operations[1]).encoded(rid: .integer(4), idempotencyKey: "k")
        #expect(
            put
                == #"{"base":7,"idempotency_key":"k","key":"notes/2","merge":"fields","patch":{"title":null},"rid":4,"type":"patch"}"#
        )
        #expect(
            Request.txn([Self.operations[3]]).encoded()
                == #"{"ops":[{"base":2,"key":"notes/4","op":"delete"}],"type":"txn"}"#
        )
    }
}
