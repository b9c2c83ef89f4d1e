/// RFC 3339 UTC timestamps with millisecond precision, from Unix milliseconds (no Foundation formatter needed).
public enum RFC3339 {
    /// Unix milliseconds of `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SSZ` or `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC only), or of a
    /// plain number of milliseconds; nil for anything else.
    public static func parse(_ text: String) -> UInt64? {
        if !text.isEmpty, text.utf8.allSatisfy({ (48...57).contains($0) }) { return UInt64(text) }
        let bytes = Array(text.utf8)
        func number(_ range: Range<Int>) -> Int64? {
            guard range.upperBound <= bytes.count, bytes[range].allSatisfy({ (48...57).contains($0) }) else {
                return nil
            }
            return bytes[range].reduce(0) { $0 * 10 + Int64($1 - 48) }
        }
        guard bytes.count >= 10, bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-"),
            let year = number(0..<4), let month = number(5..<7), let day = number(8..<10), (1...12).contains(month),
            (1...31).contains(day)
        else { return nil }
        var seconds: Int64 = 0
        var millis: Int64 = 0
        if bytes.count > 10 {
            guard bytes.count >= 20, bytes[10] == UInt8(ascii: "T"), bytes[13] == UInt8(ascii: ":"),
                bytes[16] == UInt8(ascii: ":"), bytes.last == UInt8(ascii: "Z"), let hour = number(11..<13),
                let minute = number(14..<16), let second = number(17..<19), hour < 24, minute < 60, second < 60
            else { return nil }
            seconds = hour * 3600 + minute * 60 + second
            if bytes.count == 24, bytes[19] == UInt8(ascii: "."), let fraction = number(20..<23) {
                millis = fraction
            } else if bytes.count != 20 {
                return nil
            }
        }
        // Days since 1970-01-01 from a civil date (Howard Hinnant's algorithm).
        let y = month <= 2 ? year - 1 : year
        let era = y / 400
        let yoe = y - era * 400
        let doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146_097 + doe - 719_468
        let ms = (days * 86_400 + seconds) * 1000 + millis
        return ms >= 0 ? UInt64(ms) : nil
    }

    public static func format(ms: UInt64) -> String {
        let seconds = Int64(ms / 1000)
        let millis = Int(ms % 1000)
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = Int(seconds - days * 86_400)
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        if (0...9999).contains(year) {
            // `YYYY-MM-DDTHH:MM:SS.mmmZ`, 24 bytes written in place.
            let fields: [(Int, Int)] = [
                (Int(year), 4), (Int(month), 2), (Int(day), 2), (secondOfDay / 3600, 2), (secondOfDay / 60 % 60, 2),
                (secondOfDay % 60, 2), (millis, 3),
            ]
            let separators: [UInt8] = Array("--T::.Z".utf8)
            return String(unsafeUninitializedCapacity: 24) { out in
                var at = 0
                for (index, (value, width)) in fields.enumerated() {
                    var rest = value
                    for position in stride(from: width - 1, through: 0, by: -1) {
                        out[at + position] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: rest % 10)
                        rest /= 10
                    }
                    at += width
                    out[at] = separators[index]
                    at += 1
                }
                return at
            }
        }
        func pad(_ value: Int64, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(Int64(secondOfDay / 3600), 2)):"
            + "\(pad(Int64(secondOfDay / 60 % 60), 2)):\(pad(Int64(secondOfDay % 60), 2)).\(pad(Int64(millis), 3))Z"
    }
}
