import Testing
import VersoCore

@Suite("Prefix index: the values whose prefix a key's bytes start with")
struct PrefixIndexTests {
    @Test("a key matches every prefix its bytes start with, and no other")
    func bytewise() {
        var index = PrefixIndex<Int>()
        index.insert(1, prefix: "a/")
        index.insert(2, prefix: "a/b")
        index.insert(3, prefix: "a/c")
        index.insert(4, prefix: "b")
        index.insert(5, prefix: "a/b/c/d")
        #expect(Set(index.matches("a/b/c")) == [1, 2])
        #expect(Set(index.matches("a/b/c/d")) == [1, 2, 5])
        #expect(Set(index.matches("a/")) == [1])
        #expect(index.matches("a").isEmpty)
        #expect(index.matches("c").isEmpty)
        #expect(index.matches("").isEmpty)
        #expect(index.count == 5)
    }

    @Test("the empty prefix matches every key, the empty one too")
    func emptyPrefix() {
        var index = PrefixIndex<Int>()
        index.insert(7, prefix: "")
        #expect(index.matches("") == [7])
        #expect(index.matches("anything") == [7])
        #expect(index.matches(nfd) == [7])
    }

    @Test("NFC and NFD spellings of a prefix are two prefixes, each matching only its own bytes")
    func normalizationForms() {
        var index = PrefixIndex<Int>()
        index.insert(1, prefix: "p/\(nfc)")
        index.insert(2, prefix: "p/\(nfd)")
        index.insert(3, prefix: "p/e")
        #expect(index.matches("p/\(nfc)x") == [1])
        #expect(Set(index.matches("p/\(nfd)x")) == [2, 3])
        #expect(index.matches("\(kelvin)") == [])
        index.insert(4, prefix: "K")
        #expect(index.matches(kelvin).isEmpty)
        #expect(index.matches("Kelvin") == [4])
    }

    @Test("removal takes out only the value under that prefix and frees the nodes no longer needed")
    func removal() {
        var index = PrefixIndex<Int>()
        #expect(index.nodesInUse == 1)
        index.insert(1, prefix: "abc")
        index.insert(2, prefix: "abc")
        index.insert(3, prefix: "ab")
        index.insert(1, prefix: "x")
        let insertedTwice = index.insert(1, prefix: "abc")
        #expect(!insertedTwice)
        #expect(index.count == 4)
        let removedUnderShorter = index.remove(1, prefix: "ab")
        #expect(!removedUnderShorter)
        let removedUnderLonger = index.remove(1, prefix: "abcd")
        #expect(!removedUnderLonger)
        let removedOne = index.remove(1, prefix: "abc")
        #expect(removedOne)
        #expect(Set(index.matches("abcd")) == [2, 3])
        #expect(index.matches("x") == [1])
        let removedTwo = index.remove(2, prefix: "abc")
        #expect(removedTwo)
        #expect(index.matches("abcd") == [3])
        #expect(index.nodesInUse == 4)  // root, a, b, x
        let removedThree = index.remove(3, prefix: "ab")
        #expect(removedThree)
        let removedLast = index.remove(1, prefix: "x")
        #expect(removedLast)
        #expect(index.isEmpty)
        #expect(index.nodesInUse == 1)
        // Freed nodes are reused.
        index.insert(9, prefix: "zz")
        #expect(index.matches("zzz") == [9])
        #expect(index.nodesInUse == 3)
    }

    @Test("many unrelated prefixes do not match a key they do not start")
    func manyPrefixes() {
        var index = PrefixIndex<Int>()
        for value in 0..<10_000 { index.insert(value, prefix: "idle/\(value)/") }
        index.insert(-1, prefix: "hot/")
        #expect(index.matches("hot/1") == [-1])
        #expect(index.matches("idle/42/x") == [42])
        #expect(index.matches("idle/4").isEmpty)
        for value in 0..<10_000 { index.remove(value, prefix: "idle/\(value)/") }
        #expect(index.nodesInUse == 5)  // root, h, o, t, /
    }
}
