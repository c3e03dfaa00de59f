"""Customer 360: one customer across every channel, in time order (`timeline`), served by the
management API (`apis`) and shown read-only in the admin (`admin`)."""
