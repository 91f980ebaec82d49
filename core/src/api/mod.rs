//! HubSpot REST API requests described as values (`http::Request`), and responses interpreted
//! into typed results and decisions (HUBSPOT.md §4–§6). No I/O: callers execute the requests.
