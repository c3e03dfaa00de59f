"""Writes of the channels app, one module per seam:

    deliveries       deliver: record a delivery, enqueue its send
    attempts         a send attempt as the task runs it: claim, send, record
    claims           take queued deliveries and check whether each may go
    sending          the sends, in parallel, through each channel's providers in order
    recording        what the sends came to: statuses, outcome events, retries
    sweeps           deliveries a dead worker or a lost task left behind
    outcomes         outcome events on the customer's profile
    reports          providers' reports on the messages they took
    contact_policy   the workspace's contact policy
    webhook_secrets  the secrets inbound webhooks are signed with

Other apps do not import these: they use channels.contracts.
"""
