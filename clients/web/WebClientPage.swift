import Foundation

/// The browser client: one static page (`index.html` beside this file), served at `/`.
public enum WebClientPage {
    /// The page's bytes, or nil if the resource bundle is missing.
    public static let html: [UInt8]? = {
        guard let url = Bundle.module.url(forResource: "index", withExtension: "html"),
              let data = try? Data(contentsOf: url) else { return nil }
        return Array(data)
    }()
}
