/// RFC 3339 UTC timestamps with millisecond precision, from Unix milliseconds (no Foundation formatter needed).
enum RFC3339 {
    static func format(ms: UInt64) -> String {
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
