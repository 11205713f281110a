import Testing
import VersoCore

/// NFC "é" (U+00E9, bytes C3 A9) and NFD "e" + U+0301 (bytes 65 CC 81): canonically equivalent,
/// so Swift's `String ==` calls them equal, but different bytes, so different keys and names.
let nfc = "\u{E9}"
let nfd = "e\u{301}"
/// "K" and the Kelvin sign U+212A, whose canonical decomposition is "K".
let kelvin = "\u{212A}"

@Suite("Protocol.md section 2: keys and member names are compared as UTF-8 bytes")
struct UnicodeKeyTests {
    @Test("the two spellings are equal Strings but different bytes (the premise of every test here)")
    func premise() {
        #expect(nfc == nfd)
        #expect("K" == kelvin)
        #expect(!nfc.hasSameBytes(as: nfd))
        #expect(!"K".hasSameBytes(as: kelvin))
        #expect(nfc.hasSameBytes(as: "\u{E9}"))
    }

    @Test("same bytes: a difference at any position of a string of any length is found, words and tail alike")
    func sameBytesAtEveryPosition() {
        for length in 0...40 {
            let text = String((0..<length).map { Character(Unicode.Scalar(UInt8(0x61 + $0 % 26))) })
            #expect(text.hasSameBytes(as: String(text.utf8.map { Character(Unicode.Scalar($0)) })))
            for position in 0..<length {
                var bytes = Array(text.utf8)
                bytes[position] = UInt8(ascii: "#")
                #expect(!text.hasSameBytes(as: String(decoding: bytes, as: UTF8.self)), "\(length) at \(position)")
            }
        }
        // Long strings with a shared prefix, differing in the last byte of a word and after it.
        let prefix = "load/run-1234/cas/"
        #expect(!(prefix + "12345678").hasSameBytes(as: prefix + "12345679"))
        #expect((prefix + nfc).hasSameBytes(as: prefix + "\u{E9}"))
        #expect(!(prefix + nfc).hasSameBytes(as: prefix + nfd))
    }

    @Test("BytewiseString: equality, hash and order follow the bytes")
    func bytewiseString() {
        #expect(BytewiseString(nfc) != BytewiseString(nfd))
        #expect(BytewiseString("K") != BytewiseString(kelvin))
        #expect(BytewiseString(nfc) == BytewiseString("\u{E9}"))
        #expect(Set([BytewiseString(nfc), BytewiseString(nfd), BytewiseString(nfc)]).count == 2)
        // 65 CC 81 sorts before C3 A9.
        #expect(BytewiseString(nfd) < BytewiseString(nfc))
        #expect(!(BytewiseString(nfc) < BytewiseString(nfd)))
        var byName: [BytewiseString: Int] = [:]
        byName[nfc] = 1
        byName[nfd] = 2
        #expect(byName.count == 2)
        #expect(byName[nfc] == 1)
        #expect(byName[nfd] == 2)
    }

    @Test("an object may hold both spellings of a name as two members, and only the same bytes twice is a duplicate")
    func parserMembers() throws {
        let value = try JSONParser.parse(#"{"\#(nfc)":1,"\#(nfd)":2,"K":3,"\#(kelvin)":4}"#)
        let members = try #require(value.objectValue)
        #expect(members.count == 4)
        #expect(value[nfc] == .number("1"))
        #expect(value[nfd] == .number("2"))
        #expect(value["K"] == .number("3"))
        #expect(value[kelvin] == .number("4"))
        // The escape \u00e9 is the same bytes as a literal NFC é: a duplicate.
        #expect(throws: JSONParseError.self) { try JSONParser.parse(#"{"\#(nfc)":1,"\u00e9":2}"#) }
        #expect(throws: JSONParseError.self) { try JSONParser.parse(#"{"\#(nfd)":1,"e\u0301":2}"#) }
    }

    @Test("both members are encoded, in UTF-8 byte order, and read back the same")
    func encoderMembers() throws {
        let value = JSONValue.object([BytewiseString(nfc): .integer(1), BytewiseString(nfd): .integer(2)])
        #expect(value.encodedBytes == Array(#"{"\#(nfd)":2,"\#(nfc)":1}"#.utf8))
        #expect(try JSONParser.parse(value.encodedString) == value)
    }

    @Test("values compare by bytes: a string in NFC is not the same value as in NFD")
    func valueEquality() {
        #expect(JSONValue.string(nfc) != .string(nfd))
        #expect(JSONValue.object([BytewiseString(nfc): .null]) != .object([BytewiseString(nfd): .null]))
        #expect(JSONValue.array([.string(nfc)]) == .array([.string("\u{E9}")]))
    }

    @Test("a merge patch removes or sets only the member with the same bytes")
    func mergePatch() throws {
        let target = try JSONParser.parse(#"{"\#(nfc)":"composed","\#(nfd)":"decomposed"}"#)
        let removed = MergePatch.apply(try JSONParser.parse(#"{"\#(nfc)":null}"#), to: target)
        #expect(removed == .object([BytewiseString(nfd): .string("decomposed")]))
        let set = MergePatch.apply(
            try JSONParser.parse(#"{"\#(nfd)":"new"}"#),
            to: try JSONParser.parse(#"{"\#(nfc)":"old"}"#)
        )
        #expect(set == .object([BytewiseString(nfc): .string("old"), BytewiseString(nfd): .string("new")]))
    }

    @Test("a txn may name both spellings of a key; the same bytes twice is still refused")
    func txnKeys() throws {
        let both = try Request.parse(
            #"{"type":"txn","ops":[{"op":"put","key":"\#(nfc)","base":0,"data":{}},{"op":"put","key":"\#(nfd)","base":0,"data":{}}]}"#
        )
        guard case .txn(let operations) = both.request else {
            Issue.record("expected a txn, got \(both.request)")
            return
        }
        #expect(operations.map { Array($0.key.utf8) } == [Array(nfc.utf8), Array(nfd.utf8)])
        #expect(throws: RejectedRequest.self) {
            try Request.parse(
                #"{"type":"txn","ops":[{"op":"put","key":"\#(nfc)","base":0,"data":{}},{"op":"check","key":"\u00e9","base":0}]}"#
            )
        }
    }

    @Test("a subscribe naming both spellings follows two keys, each matching only its own bytes")
    func subscribeKeys() throws {
        let envelope = try Request.parse(#"{"type":"subscribe","keys":["\#(nfc)","\#(nfd)","\#(nfc)"]}"#)
        guard case .subscribe(.keys(let keys), _, _, _) = envelope.request else {
            Issue.record("expected a keys subscription, got \(envelope.request)")
            return
        }
        #expect(keys == [BytewiseString(nfc), BytewiseString(nfd)])
        #expect(SubscriptionFilter.keys([BytewiseString(nfc)]).matches(nfc))
        #expect(!SubscriptionFilter.keys([BytewiseString(nfc)]).matches(nfd))
        #expect(!SubscriptionFilter.keys(["K"]).matches(kelvin))
        #expect(!SubscriptionFilter.prefix("p/\(nfc)").matches("p/\(nfd)x"))
        #expect(SubscriptionFilter.prefix("p/e").matches("p/\(nfd)x"))
    }
}
