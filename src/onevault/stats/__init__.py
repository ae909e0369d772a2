"""The stats API: visitors, visits, page views and more by time, page, source and device, over the marts."""
