import VersoClient

/// The wire-level client the tests use.
public typealias TestClient = WireConnection
