"""The Node SDK suite's Kafka side, in a client that is not the SDK's: kafkajs cannot join a
consumer group on Kafka 4 (KIP-896 removed the protocol versions it speaks), so the suite
reads raw records with confluent-kafka and decodes and verifies them itself in Node.

    kafka_tool.py create TOPIC          a 3-partition topic
    kafka_tool.py read TOPIC COUNT      JSON lines {key, value, headers} (hex), from the start,
                                        until COUNT arrived and 2 s more brought none (so a
                                        duplicate would be seen), or 60 s
"""
import json
import os
import sys
import time
import uuid

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap = os.environ["VIGIL_KAFKA_BOOTSTRAP"]
command, topic = sys.argv[1], sys.argv[2]
if command == "create":
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)]).values():
        future.result(30)
    sys.exit(0)

count = int(sys.argv[3])
consumer = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": f"js-sdk-reader-{uuid.uuid4().hex}",
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
})
consumer.subscribe([topic])
seen, deadline, quiet_until = 0, time.monotonic() + 60, None
try:
    while time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None or message.error():
            if seen >= count:
                quiet_until = quiet_until or time.monotonic() + 2
                if time.monotonic() >= quiet_until:
                    break
            continue
        seen += 1
        print(json.dumps({
            "key": (message.key() or b"").hex(),
            "value": message.value().hex(),
            "headers": {k: v.hex() for k, v in (message.headers() or [])},
        }), flush=True)
finally:
    consumer.close()
