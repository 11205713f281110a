/// Values filed under key prefixes, found by the keys they match: a trie over UTF-8 bytes.
///
/// A prefix matches a key when the key's bytes start with the prefix's bytes (Protocol.md
/// section 2): the empty prefix matches every key, and NFC "é" and NFD "e\u{301}" are two
/// different prefixes. Finding the values that match a key walks the key's bytes once, so it
/// costs at most one step per byte of the key plus one per match, however many prefixes are
/// filed: a change to an unrelated key stops at the first byte no prefix shares.
///
/// Nodes live in one array (freed slots are reused) and edges in one dictionary keyed by
/// (node, byte), so a node costs no allocation of its own unless values are filed at it.
public struct PrefixIndex<Value: Hashable & Sendable>: Sendable {
    private struct Node: Sendable {
        /// Values filed under the prefix that ends at this node.
        var values: Set<Value> = []
        var parent: Int32
        /// The byte on the edge from the parent.
        var byte: UInt8
        var childCount: Int32 = 0
    }

    /// Node 0 is the root: the empty prefix.
    private var nodes: [Node] = [Node(parent: -1, byte: 0)]
    /// Slots of `nodes` free for reuse.
    private var freeNodes: [Int32] = []
    /// Child of a node by byte, keyed by `node << 8 | byte`.
    private var edges: [Int: Int32] = [:]

    public init() {}

    /// Number of values filed (a value filed under two prefixes counts twice).
    public private(set) var count = 0

    public var isEmpty: Bool { count == 0 }

    /// Trie nodes in use, the root included: 1 when empty (for tests of removal).
    public var nodesInUse: Int { nodes.count - freeNodes.count }

    private static func edge(_ node: Int32, _ byte: UInt8) -> Int { Int(node) << 8 | Int(byte) }

    /// Files `value` under `prefix`; returns false when it was already filed there.
    @discardableResult
    public mutating func insert(_ value: Value, prefix: String) -> Bool {
        var node: Int32 = 0
        for byte in prefix.utf8 {
            if let child = edges[Self.edge(node, byte)] {
                node = child
                continue
            }
            let child: Int32
            if let reused = freeNodes.popLast() {
                child = reused
                nodes[Int(child)] = Node(parent: node, byte: byte)
            } else {
                child = Int32(nodes.count)
                nodes.append(Node(parent: node, byte: byte))
            }
            edges[Self.edge(node, byte)] = child
            nodes[Int(node)].childCount += 1
            node = child
        }
        let inserted = nodes[Int(node)].values.insert(value).inserted
        if inserted { count += 1 }
        return inserted
    }

    /// Removes `value` from under `prefix`, freeing the nodes no longer needed; returns
    /// whether it was filed there.
    @discardableResult
    public mutating func remove(_ value: Value, prefix: String) -> Bool {
        var node: Int32 = 0
        for byte in prefix.utf8 {
            guard let child = edges[Self.edge(node, byte)] else { return false }
            node = child
        }
        guard nodes[Int(node)].values.remove(value) != nil else { return false }
        count -= 1
        while node != 0, nodes[Int(node)].values.isEmpty, nodes[Int(node)].childCount == 0 {
            let parent = nodes[Int(node)].parent
            edges[Self.edge(parent, nodes[Int(node)].byte)] = nil
            nodes[Int(parent)].childCount -= 1
            nodes[Int(node)].values = []
            freeNodes.append(node)
            node = parent
        }
        return true
    }

    /// Calls `body` with every value filed under a prefix of `key` (shortest prefix first).
    public func forEachMatch(of key: String, _ body: (Value) -> Void) {
        var node: Int32 = 0
        nodes[0].values.forEach(body)
        for byte in key.utf8 {
            guard nodes[Int(node)].childCount > 0, let child = edges[Self.edge(node, byte)] else { return }
            node = child
            nodes[Int(node)].values.forEach(body)
        }
    }

    /// Every value filed under a prefix of `key`.
    public func matches(_ key: String) -> [Value] {
        var found: [Value] = []
        forEachMatch(of: key) { found.append($0) }
        return found
    }
}
