"""Customers as records: contacts, their channel identities, organizations."""
