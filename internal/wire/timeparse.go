package wire

import "time"

// parseTime parses a CloudEvents time (RFC 3339). The form this package
// writes, UTC as "2006-01-02T15:04:05.999999999Z", is read by a fixed-layout
// fast path; anything else (an offset, lower-case letters, an out-of-range
// field) goes to time.Parse, which also reports the errors, so the result is
// always time.Parse's.
func parseTime(s string) (time.Time, error) {
	if t, ok := parseUTC(s); ok {
		return t, nil
	}
	return time.Parse(time.RFC3339Nano, s)
}

// parseUTC parses "YYYY-MM-DDTHH:MM:SS[.F]Z" with 1 to 9 fraction digits;
// ok is false for any other text and for out-of-range fields.
func parseUTC(s string) (t time.Time, ok bool) {
	if len(s) < len("2006-01-02T15:04:05Z") || s[len(s)-1] != 'Z' ||
		s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	year, month, day := num(s, 0, 4), num(s, 5, 2), num(s, 8, 2)
	hour, minute, sec := num(s, 11, 2), num(s, 14, 2), num(s, 17, 2)
	if year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 ||
		minute < 0 || minute > 59 || sec < 0 || sec > 59 {
		return time.Time{}, false
	}
	if day > daysIn(time.Month(month), year) {
		return time.Time{}, false
	}
	nsec := 0
	if frac := s[19 : len(s)-1]; frac != "" {
		if len(frac) < 2 || len(frac) > 10 || frac[0] != '.' {
			return time.Time{}, false
		}
		digits := len(frac) - 1
		if nsec = num(s, 20, digits); nsec < 0 {
			return time.Time{}, false
		}
		for range 9 - digits {
			nsec *= 10
		}
	}
	// Days since 1970-01-01 of the proleptic Gregorian date, by eras of
	// 400 years counted from March (the leap day last); year >= 0 here.
	y := year
	if month <= 2 {
		y--
	}
	era := y / 400
	if y < 0 {
		era = (y - 399) / 400
	}
	yoe := y - era*400
	mp := (month + 9) % 12 // March = 0
	doy := (153*mp+2)/5 + day - 1
	days := era*146097 + yoe*365 + yoe/4 - yoe/100 + doy - 719468
	secs := int64(days)*86400 + int64(hour*3600+minute*60+sec)
	return time.Unix(secs, int64(nsec)).UTC(), true
}

// num returns the decimal number s[i:i+n], or -1 when it holds a
// non-digit.
func num(s string, i, n int) int {
	v := 0
	for j := i; j < i+n; j++ {
		c := s[j]
		if c < '0' || c > '9' {
			return -1
		}
		v = v*10 + int(c-'0')
	}
	return v
}

// daysIn returns the number of days of month in year.
func daysIn(month time.Month, year int) int {
	if month == time.February {
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	}
	return 30 + int((month+month/8)&1)
}
