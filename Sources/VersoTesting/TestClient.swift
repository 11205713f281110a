import VersoClient
import VersoWire

/// The wire-level client the tests use.
public typealias TestClient = WireConnection
