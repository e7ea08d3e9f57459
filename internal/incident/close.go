package incident

// KindClose is `irctl close`: the incident is closed, by the record's
// operator at its time; Result says why when it was forced.
const KindClose = "close"
