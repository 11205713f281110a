import Testing

@testable import VersoClient

/// `point.admit(seq:key:)`, callable where `#expect` takes only expressions without mutation.
private func admitted(_ point: inout ResumePoint, _ seq: Int64, _ key: String) -> Bool {
    point.admit(seq: seq, key: key)
}

@Suite("ResumePoint: a resume after a drop loses no update of a txn and delivers none twice")
struct ResumePointTests {
    @Test("a drop between the updates of one txn resumes before its seq and skips the keys delivered")
    func dropMidTxn() {
        var point = ResumePoint(start: 5)
        #expect(admitted(&point, 7, "a"))
        #expect(admitted(&point, 7, "b"))
        #expect(point.since == 5, "seq 7 may have more updates: a resume starts before it")
        // The connection drops; the resume replays every change after 5.
        #expect(!admitted(&point, 7, "a"))
        #expect(!admitted(&point, 7, "b"))
        #expect(admitted(&point, 7, "c"), "the update the drop cut off")
        #expect(admitted(&point, 8, "a"))
        #expect(point.since == 7, "a later seq completes the one before")
        #expect(!admitted(&point, 6, "z"), "nothing at or before a complete seq")
        #expect(!admitted(&point, 7, "d"))
    }

    @Test("a progress bookmark completes every seq up to it; one older than the point changes nothing")
    func bookmarks() {
        var point = ResumePoint(start: 0)
        #expect(admitted(&point, 3, "a"))
        point.progress(9)
        #expect(point.since == 9)
        #expect(!admitted(&point, 3, "b") && !admitted(&point, 9, "x"))
        point.progress(4)
        #expect(point.since == 9)
        #expect(admitted(&point, 10, "a"))
        point.progress(9)
        #expect(point.since == 9 && admitted(&point, 10, "b"), "the bookmark does not close a later seq")
    }
}
