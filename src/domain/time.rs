//! Instants are kept as UTC milliseconds and rendered in the display zone only
//! at the edge.

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// Now, in milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    Timestamp::now().as_millisecond()
}

/// `2020-08-18T13:12:06.000+03:00`: three fractional digits and the zone's
/// offset at that instant, so summer and winter time differ.
pub fn render(millis: i64, zone: &TimeZone) -> String {
    // Every i64 millisecond value the store can hold is far inside jiff's
    // range; an out-of-range value would only come from a corrupted row.
    let instant = Timestamp::from_millisecond(millis).unwrap_or(Timestamp::UNIX_EPOCH);
    instant
        .to_zoned_datetime(zone.clone())
        .strftime("%Y-%m-%dT%H:%M:%S%.3f%:z")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn helsinki() -> TimeZone {
        TimeZone::get("Europe/Helsinki").unwrap()
    }

    #[test]
    fn summer_time_in_helsinki_is_three_hours_ahead() {
        let t: Timestamp = "2020-08-18T10:12:06Z".parse().unwrap();
        assert_eq!(
            render(t.as_millisecond(), &helsinki()),
            "2020-08-18T13:12:06.000+03:00"
        );
    }

    #[test]
    fn winter_time_in_helsinki_is_two_hours_ahead_with_milliseconds() {
        let t: Timestamp = "2021-01-05T08:00:00.123Z".parse().unwrap();
        assert_eq!(
            render(t.as_millisecond(), &helsinki()),
            "2021-01-05T10:00:00.123+02:00"
        );
    }
}
