"""The job engine: long-running work that clients follow, pause, cancel and resubmit through /jobs.

- :mod:`fastpacs.jobs.job`: what a job type implements (:class:`~fastpacs.jobs.job.Job`: steps,
  Content, outputs, serialisable state) and the states of Orthanc's job model.
- :mod:`fastpacs.jobs.engine`: the engine owned by the server process — priority queue,
  ``ConcurrentJobs`` runners (asyncio tasks), the actions of /jobs, the bounded history.
- :mod:`fastpacs.jobs.persistence`: how jobs are saved in the index so that they survive a restart.
"""
