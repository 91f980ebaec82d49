//! Walking a CRM search result set of any size past HubSpot's 10,000-result cap
//! (HUBSPOT.md §4.4) by windowing on a sort key.
