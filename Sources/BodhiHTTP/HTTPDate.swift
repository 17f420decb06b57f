#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// RFC 9110's IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), as the `Date` and `Sunset` headers
/// carry it. The current date is formatted once a second, not once a response.
public enum HTTPDate {
    private static let weekdays = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    private static let latest = Mutex<(second: Int, text: String)>((second: .min, text: ""))

    public static func format(epochSeconds: Int) -> String {
        var time = time_t(epochSeconds)
        var utc = tm()
        gmtime_r(&time, &utc)
        func twoDigits(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(weekdays[Int(utc.tm_wday)]), \(twoDigits(utc.tm_mday)) \(months[Int(utc.tm_mon)]) \(utc.tm_year + 1900) "
            + "\(twoDigits(utc.tm_hour)):\(twoDigits(utc.tm_min)):\(twoDigits(utc.tm_sec)) GMT"
    }

    /// Now, to the second.
    public static var now: String {
        var clock = timespec()
        clock_gettime(CLOCK_REALTIME, &clock)
        let second = Int(clock.tv_sec)
        return latest.withLock { latest in
            if latest.second != second { latest = (second, format(epochSeconds: second)) }
            return latest.text
        }
    }
}
