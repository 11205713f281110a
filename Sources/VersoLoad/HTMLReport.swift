import Foundation

/// A report as one self-contained HTML page for people: the summary table, a table of every
/// latency distribution, and their percentile curves as inline SVG (no scripts, no external
/// files), drawn as HdrHistogram plots them: percentile on a logarithmic 1/(1-p) axis,
/// latency in milliseconds up the side, one line per distribution.
public enum HTMLReport {
    /// The whole page.
    public static func render(_ report: LoadReport) -> String {
        var html = """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <title>verso-load \(escape(report.scenario))</title>
            <style>
            body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
            table { border-collapse: collapse; margin: 1em 0; }
            th, td { padding: 2px 10px; border-bottom: 1px solid #ddd; text-align: left; }
            td.n { text-align: right; font-variant-numeric: tabular-nums; }
            .failed { color: #b00; font-weight: bold; }
            svg text { font: 12px system-ui, sans-serif; fill: #222; }
            </style>
            </head>
            <body>
            <h1>verso-load: \(escape(report.scenario))</h1>
            <p class="\(report.succeeded ? "ok" : "failed")">\(report.succeeded ? "No errors, no failed checks." : "FAILED: errors or failed checks, listed below.")</p>
            <h2>Summary</h2>
            <table>

            """
        for row in report.rows {
            let rowClass = row.name == "FAILED" ? " class=\"failed\"" : ""
            html += "<tr\(rowClass)><th>\(escape(row.name))</th><td>\(escape(row.value))</td></tr>\n"
        }
        html +=
            "</table>\n<h2>Latency</h2>\n<table>\n<tr><th>timed</th><th>count</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th></tr>\n"
        for summary in report.latencies {
            let cells = [summary.p50, summary.p90, summary.p99, summary.p999, summary.max]
                .map { "<td class=\"n\">\(LoadReport.milliseconds($0))</td>" }.joined()
            html += "<tr><th>\(escape(summary.name))</th><td class=\"n\">\(summary.count)</td>\(cells)</tr>\n"
        }
        html += "</table>\n"
        html += svg(report.latencies.filter { !$0.curve.isEmpty })
        html += "\n</body>\n</html>\n"
        return html
    }

    /// Line colors, one per distribution in turn.
    static let colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]

    /// The percentile curves of `series` as an SVG element, 800 × 420.
    static func svg(_ series: [LatencySummary]) -> String {
        let width = 800.0, height = 420.0
        let left = 70.0, right = 20.0, top = 20.0, bottom = 50.0
        let plotWidth = width - left - right, plotHeight = height - top - bottom
        // x: log10(1 / (1 - p)), from 0 (p = 0) to the last decade any curve reaches.
        func decade(_ percentile: Double) -> Double { log10(1 / Swift.max(1e-9, 1 - percentile / 100)) }
        let decades = Swift.max(
            2,
            series.flatMap(\.curve).map { decade($0.percentile) }.max().map { Int($0.rounded(.up)) } ?? 2
        )
        let topMillis = niceCeiling(Double(series.map(\.max).max() ?? 1) / 1000)
        func x(_ percentile: Double) -> Double { left + plotWidth * decade(percentile) / Double(decades) }
        func y(_ millis: Double) -> Double { top + plotHeight * (1 - millis / topMillis) }
        func number(_ value: Double) -> String { String(format: "%.1f", value) }

        var svg =
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" role=\"img\" aria-label=\"latency by percentile\">\n"
        svg +=
            "<rect x=\"\(number(left))\" y=\"\(number(top))\" width=\"\(number(plotWidth))\" height=\"\(number(plotHeight))\" fill=\"none\" stroke=\"#888\"/>\n"
        // Vertical grid: 0 %, 90 %, 99 %, 99.9 %, …
        for step in 0...decades {
            let percentile = 100 * (1 - pow(10, -Double(step)))
            let position = x(percentile)
            let label = step == 0 ? "0%" : String(format: "%.\(Swift.max(0, step - 2))f%%", percentile)
            svg +=
                "<line x1=\"\(number(position))\" y1=\"\(number(top))\" x2=\"\(number(position))\" y2=\"\(number(top + plotHeight))\" stroke=\"#ddd\"/>\n"
            svg +=
                "<text x=\"\(number(position))\" y=\"\(number(top + plotHeight + 18))\" text-anchor=\"middle\">\(label)</text>\n"
        }
        // Horizontal grid: 5 steps of latency.
        for step in 0...5 {
            let millis = topMillis * Double(step) / 5
            let position = y(millis)
            svg +=
                "<line x1=\"\(number(left))\" y1=\"\(number(position))\" x2=\"\(number(left + plotWidth))\" y2=\"\(number(position))\" stroke=\"#ddd\"/>\n"
            svg +=
                "<text x=\"\(number(left - 6))\" y=\"\(number(position + 4))\" text-anchor=\"end\">\(axisLabel(millis))</text>\n"
        }
        svg +=
            "<text x=\"\(number(left + plotWidth / 2))\" y=\"\(number(height - 8))\" text-anchor=\"middle\">percentile (log scale of 1/(1-p))</text>\n"
        svg +=
            "<text transform=\"translate(16 \(number(top + plotHeight / 2))) rotate(-90)\" text-anchor=\"middle\">latency ms</text>\n"
        for (index, summary) in series.enumerated() {
            let color = colors[index % colors.count]
            let points = summary.curve.map { "\(number(x($0.percentile))),\(number(y(Double($0.micros) / 1000)))" }
                .joined(separator: " ")
            svg += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(points)\"/>\n"
            let legendY = top + 18 + 18 * Double(index)
            svg +=
                "<line x1=\"\(number(left + 12))\" y1=\"\(number(legendY - 4))\" x2=\"\(number(left + 36))\" y2=\"\(number(legendY - 4))\" stroke=\"\(color)\" stroke-width=\"2\"/>\n"
            svg +=
                "<text x=\"\(number(left + 42))\" y=\"\(number(legendY))\">\(escape(summary.name)) (\(summary.count))</text>\n"
        }
        svg += "</svg>"
        return svg
    }

    /// The smallest of 1, 2, 2.5, 5 × a power of ten that is at least `value` (and above 0).
    static func niceCeiling(_ value: Double) -> Double {
        guard value > 0 else { return 1 }
        let power = pow(10, floor(log10(value)))
        for factor in [1, 2, 2.5, 5, 10] where factor * power >= value { return factor * power }
        return 10 * power
    }

    private static func axisLabel(_ millis: Double) -> String {
        millis == millis.rounded() ? String(format: "%.0f", millis) : String(format: "%g", millis)
    }

    /// `text` with HTML's special characters escaped.
    static func escape(_ text: String) -> String {
        var result = ""
        result.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            case "\"": result += "&quot;"
            default: result.append(character)
            }
        }
        return result
    }
}
