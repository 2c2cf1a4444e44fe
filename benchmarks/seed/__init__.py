"""The seed blog's two Greengrass V1 functions, carried as the benchmarks' baseline.

Written down from the listing in "Field Notes: Integrating IoT and ITSM using AWS
IoT Greengrass and AWS Secrets Manager" (Part 1), in this repository's words, with
the blog's behaviour kept: the sensor function reads, sleeps 5 s, then publishes
(so every reading is 5 s stale); every breaching sample becomes one ServiceNow
POST; the anomaly function fetches the secret on every invocation and posts
without a timeout, a status check or a kept-alive connection; the sensor
function imports boto3 without using it; when both limits are breached the
humidity title overwrites the temperature one.

Adapted only as far as needed to run here (each change is marked ``ADAPTED``):

* the loop is started by the harness (the blog never starts ``get_sensor_data``);
* breaching samples are also published to ``IoTBlog/anomaly``, as the blog's
  prose and subscription table say (its ``publishData`` listing forgets it,
  which would leave the anomaly function with nothing to do);
* the payload is UTF-8 encoded before ``publish`` (the blog passes ``str``; the
  core IPC stand-in used here refuses ``str`` as older cores' IPC clients do);
* the 5 s sleep goes through ``sleep`` and ``SAMPLE_DELAY_S``, module
  attributes the harness may replace (virtual time) or shorten; the figures
  say when it does;
* ``sense_hat`` and ``greengrasssdk`` are whatever the harness installed: the
  chip stand-in and the installed SDK over the core IPC stand-in.
"""
