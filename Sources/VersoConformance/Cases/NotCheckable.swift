extension ConformanceSuite {
    /// Rules no client can provoke over the wire, listed so the report shows what is not covered.
    static let notCheckable: [ConformanceCase] = [
        .notCheckable(
            "1.2 closing codes: 1001 when the server shuts down",
            because: "only a shutdown of the server provokes it (section 8); the server's own tests send it SIGTERM"
        ),
        .notCheckable(
            "1.2 closing codes: 1008 for a client that lets more than 64 MiB pile up unread",
            because:
                "it needs a client that stops reading at the TCP level and 64 MiB of updates written to the server; too heavy for a server holding other people's data"
        ),
        .notCheckable(
            "1.1 limits: since older than the change log kept (--history) resets",
            because:
                "pruning can only be provoked on a server with a small history; the epoch and ahead-of-the-store resets are checked in section 5"
        ),
        .notCheckable(
            "3.9 history: versions no longer kept are named gone, never skipped",
            because:
                "pruning can only be provoked on a server with a small --history; the server's own tests run one with --history 16 and --keep-versions"
        ),
        .notCheckable(
            "1.3 origins: an upgrade from a web page of another origin is answered 403",
            because:
                "which origins a server accepts depends on how it was started (--allow-origin, --allow-any-origin), which a client cannot know; the server's own tests and the browser test check it"
        ),
        .notCheckable(
            "5 subscriptions: closing the connection ends its subscriptions",
            because: "no other connection can observe another connection's subscriptions"
        ),
        .notCheckable("6 errors: unavailable", because: "only a server that is shutting down answers it (section 8)"),
        .notCheckable("6 errors: internal", because: "only a failing store provokes it"),
        .notCheckable(
            "7 durability: an ack is sent only after the change is committed",
            because: "checking it needs a crash of the server; the server's own tests kill -9 a real process"
        ),
        .notCheckable(
            "8 shutdown: writes accepted before SIGTERM commit and are answered, then 1001",
            because: "it needs a signal sent to the server process; the server's own tests do that"
        ),
    ]
}
