import Testing
import VersoCore

@Suite("Request parsing")
struct RequestParsingTests {
    @Test("parses a put with its rid")
    func put() throws {
        let envelope = try Request.parse(#"{"type":"put","rid":"r1","key":"notes/1","base":0,"data":{"t":"x"}}"#)
        #expect(envelope.rid == .string("r1"))
        #expect(
            envelope.request
                == .write(WriteOperation(key: "notes/1", action: .put(["t": .string("x")]), precondition: .base(0)))
        )
    }

    @Test(
        "rejects bad requests with bad_request and keeps the rid",
        arguments: [
            #"{"type":"put","rid":7,"key":"k","data":{}}"#,
            #"{"type":"put","rid":7,"key":"k","base":-1,"data":{}}"#,
            #"{"type":"put","rid":7,"key":"k","base":1.5,"data":{}}"#,
            #"{"type":"put","rid":7,"key":"k","base":"1","data":{}}"#,
            #"{"type":"put","rid":7,"key":"k","base":0,"data":[1]}"#,
            #"{"type":"put","rid":7,"key":"k","base":0}"#,
            #"{"type":"patch","rid":7,"key":"k","base":0}"#,
            #"{"type":"patch","rid":7,"key":"k","base":0,"patch":3}"#,
            #"{"type":"put","rid":7,"key":"","base":0,"data":{}}"#,
            #"{"type":"put","rid":7,"key":"a\u0001","base":0,"data":{}}"#,
            #"{"type":"put","rid":7,"key":12,"base":0,"data":{}}"#,
            #"{"type":"put","rid":7,"base":0,"data":{}}"#,
            #"{"type":"put","rid":7,"key":"k","base":0,"force":true,"data":{}}"#,
            #"{"type":"nope","rid":7}"#,
            #"{"rid":7}"#,
            #"{"type":5,"rid":7}"#,
            #"{"type":"txn","rid":7,"ops":[]}"#,
            #"{"type":"txn","rid":7,"ops":[{"op":"put","key":"a","base":0,"data":{}},{"op":"delete","key":"a","base":1}]}"#,
            #"{"type":"txn","rid":7,"ops":[{"op":"drop","key":"a","base":0}]}"#,
            #"{"type":"subscribe","rid":7}"#,
            #"{"type":"subscribe","rid":7,"keys":[],"prefix":"a"}"#,
            #"{"type":"subscribe","rid":7,"keys":[]}"#,
            #"{"type":"subscribe","rid":7,"prefix":"a","since":-3}"#,
            #"{"type":"list","rid":7,"limit":0}"#,
            #"{"type":"list","rid":7,"limit":100000}"#,
            #"{"type":"unsubscribe","rid":7}"#,
        ]
    )
    func rejects(_ text: String) {
        #expect(throws: RejectedRequest.self) { try Request.parse(text) }
        do {
            _ = try Request.parse(text)
        } catch {
            #expect(error.rid == .number("7"))
            #expect(error.error.code == .badRequest)
            #expect(!error.error.message.isEmpty)
        }
    }

    @Test("a txn or subscription over the size limits is too_large")
    func tooLarge() {
        let ops = (0...RequestLimits.maxTxnOps).map { #"{"op":"check","key":"k\#($0)","base":0}"# }.joined(
            separator: ","
        )
        let keys = (0...RequestLimits.maxSubscribeKeys).map { #""k\#($0)""# }.joined(separator: ",")
        for text in [#"{"type":"txn","ops":[\#(ops)]}"#, #"{"type":"subscribe","keys":[\#(keys)]}"#] {
            do {
                _ = try Request.parse(text)
                Issue.record("expected too_large")
            } catch {
                #expect(error.error.code == .tooLarge)
            }
        }
    }

    @Test("keys are 1–512 bytes of UTF-8 without control characters")
    func keys() {
        #expect(RecordKey.problem(with: String(repeating: "é", count: 256)) == nil)
        #expect(RecordKey.problem(with: String(repeating: "é", count: 256) + "x") != nil)
        #expect(RecordKey.problem(with: "tab\there") != nil)
        #expect(RecordKey.problem(with: "del\u{7F}") != nil)
        #expect(RecordKey.problem(with: "notes/😀 ok") == nil)
    }

    @Test("a rid that is neither a string nor an integer is refused without echo")
    func badRid() {
        do {
            _ = try Request.parse(#"{"type":"hello","rid":{"x":1}}"#)
            Issue.record("expected a rejection")
        } catch {
            #expect(error.rid == nil)
        }
    }
}
