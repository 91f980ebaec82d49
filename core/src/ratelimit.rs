//! The rate governor: a pure model of HubSpot's limits (HUBSPOT.md §5) that answers "may I send
//! now, or when".
